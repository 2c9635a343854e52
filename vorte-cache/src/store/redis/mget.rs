//! The batched read of entries (`store/read_batch.rs`): one `MGET` on a single server, one
//! per hash slot on a cluster.

use std::time::Duration;

use bytes::Bytes;
use fred::prelude::{ClientLike, KeysInterface, Pool};
use fred::types::config::Options;

use super::errors::command_error;
use super::{command_options, redirect};
use crate::error::Result;
use crate::store::read_batch::MultiGet;

/// The batched read: one `MGET` on a single server; on a cluster, one `MGET` per hash slot
/// (a multi-key command may not cross slots), sent concurrently, each with its own outcome: the
/// keys of a dead node fail, and only they (each counted by that node's circuit).
pub(super) fn multi_get(
    pool: Pool,
    clustered: bool,
    layer: &'static str,
    backend: &'static str,
    timeout: Duration,
) -> MultiGet {
    std::sync::Arc::new(move |keys: Vec<String>, left: Duration| {
        let pool = pool.clone();
        Box::pin(async move {
            let fail = |e: fred::error::Error| command_error(layer, backend, timeout, "mget", &e);
            let options = Options {
                timeout: Some(left),
                ..command_options()
            };
            if !clustered {
                return pool
                    .next()
                    .with_options(&options)
                    .mget::<Vec<Option<Bytes>>, _>(keys)
                    .await
                    .map(|values| values.into_iter().map(Ok).collect())
                    .map_err(fail);
            }
            let mut groups: std::collections::HashMap<u16, Vec<usize>> =
                std::collections::HashMap::new();
            for (i, key) in keys.iter().enumerate() {
                groups
                    .entry(fred::util::redis_keyslot(key.as_bytes()))
                    .or_default()
                    .push(i);
            }
            let reads = groups.into_values().map(|positions| {
                let group: Vec<String> = positions.iter().map(|&i| keys[i].clone()).collect();
                let client = pool.next().with_options(&options);
                async move {
                    let (client, group) = (&client, &group);
                    let values = redirect::follow(left, || async move {
                        redirect::values(client.mget(group.clone()).await)
                    })
                    .await;
                    let values = match values {
                        Ok(values) if values.len() == positions.len() => Ok(values),
                        Ok(_) => Err(fail(fred::error::Error::new(
                            fred::error::ErrorKind::Protocol,
                            "MGET answered a different number of values",
                        ))),
                        Err(e) => Err(fail(e)),
                    };
                    (positions, values)
                }
            });
            let mut out: Vec<Result<Option<Bytes>>> = keys.iter().map(|_| Ok(None)).collect();
            for (positions, values) in futures_util::future::join_all(reads).await {
                match values {
                    Ok(values) => {
                        for (i, value) in positions.into_iter().zip(values) {
                            out[i] = Ok(value);
                        }
                    }
                    Err(e) => {
                        for i in positions {
                            out[i] = Err(e.clone());
                        }
                    }
                }
            }
            Ok(out)
        })
    })
}
