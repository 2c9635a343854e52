//! Leases on memcached (`docs/leases.md#memcached`).
//!
//! A lease is the name [`lease_name`] gives its key, on the server that owns the key, holding its
//! token in decimal. Taking it is an add (`ms … ME`), which fails while the name exists; its TTL
//! is counted in whole seconds, rounded up like every TTL here. Renewing and releasing read the
//! value with its CAS token (`mg … v c`) and act only if the value is our token, by a write or a
//! delete conditional on that CAS token (`C<cas>`): a holder whose lease lapsed and was taken by
//! another process can neither extend nor end the new holder's lease. Leases live outside the
//! namespace generations, so a flush does not free a key another process is loading.

use std::time::Duration;

use async_memcached::{Client, MetaProtocol};

use super::call::Done;
use super::names::{exptime, lease_name, unix_now};
use super::{McError, MemcachedStore};

/// What one lease call does.
pub(super) enum LeaseOp<'a> {
    Acquire {
        key: &'a str,
        token: u64,
        ttl: Duration,
    },
    Renew {
        key: &'a str,
        token: u64,
        ttl: Duration,
    },
    Release {
        key: &'a str,
        token: u64,
    },
}

impl LeaseOp<'_> {
    pub(super) fn key(&self) -> &str {
        match self {
            LeaseOp::Acquire { key, .. }
            | LeaseOp::Renew { key, .. }
            | LeaseOp::Release { key, .. } => key,
        }
    }

    fn token(&self) -> u64 {
        match self {
            LeaseOp::Acquire { token, .. }
            | LeaseOp::Renew { token, .. }
            | LeaseOp::Release { token, .. } => *token,
        }
    }
}

/// The CAS flag (`C<cas>`) of `name` while it holds `token`; `None` when it holds something else
/// or nothing.
async fn held(client: &mut Client, name: &str, token: &str) -> Result<Option<String>, McError> {
    let current = client
        .meta_get(name, false, None, Some(&["v", "c"]))
        .await?;
    Ok(current
        .filter(|v| v.data.as_deref() == Some(token.as_bytes()))
        .and_then(|v| v.cas)
        .map(|cas| format!("C{cas}")))
}

impl MemcachedStore {
    /// Runs a lease call; `Done::Flag(acted)`. A refused add or a CAS mismatch comes back as the
    /// protocol status, which the caller reads as `false`.
    pub(super) async fn run_lease(
        &self,
        client: &mut Client,
        op: &LeaseOp<'_>,
    ) -> Result<Done, McError> {
        let name = lease_name(&self.prefix, op.key());
        let token = op.token().to_string();
        // An add for a new lease; for ours, the condition that it still is (its CAS token).
        let (ttl, condition) = match op {
            LeaseOp::Acquire { ttl, .. } => (Some(*ttl), "ME".to_owned()),
            LeaseOp::Renew { .. } | LeaseOp::Release { .. } => {
                let Some(cas) = held(client, &name, &token).await? else {
                    return Ok(Done::Flag(false));
                };
                let ttl = match op {
                    LeaseOp::Renew { ttl, .. } => Some(*ttl),
                    _ => None,
                };
                (ttl, cas)
            }
        };
        match ttl {
            Some(ttl) => {
                let ttl = format!("T{}", exptime(ttl, unix_now()));
                let flags = [ttl.as_str(), condition.as_str()];
                client
                    .meta_set(&name, token.as_bytes(), false, None, Some(&flags))
                    .await?
            }
            None => {
                client
                    .meta_delete(&name, false, None, Some(&[condition.as_str()]))
                    .await?
            }
        };
        Ok(Done::Flag(true))
    }

    /// Runs `op` on the server that owns its key: whether it acted.
    pub(super) async fn lease(&self, what: &str, op: LeaseOp<'_>) -> crate::error::Result<bool> {
        let server = self.server_of(op.key());
        match self.call(what, server, super::call::Op::Lease(op)).await? {
            Done::Flag(acted) => Ok(acted),
            Done::Value(_) | Done::Unit => Ok(false),
        }
    }
}
