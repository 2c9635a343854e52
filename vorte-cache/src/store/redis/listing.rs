//! A complete listing of a Redis Cluster: every key matching a pattern, or an error, never a
//! silent part (`docs/consistency.md#redis-cluster-topology-changes`).
//!
//! `SCAN` has no key, so nothing redirects it: a scan of the primaries the client last heard of
//! misses the keys of a primary it does not know yet (a cluster just created, a replica just
//! promoted), and a key that moves between two primaries during the scan (`redis-cli --cluster
//! reshard`) is seen on neither. So each attempt asks every known primary what it owns (its own
//! line of `CLUSTER NODES`), scans them only if together they own all 16384 slots once with no
//! slot migrating, and keeps the result only if the primaries say the same afterwards. Otherwise
//! the listing starts over, a bounded number of times, on a client connected for it (so with the
//! topology as the cluster tells it now).

use std::time::Duration;

use fred::error::{Error as FredError, ErrorKind as FredErrorKind};
use fred::prelude::{Client, ClientLike, KeysInterface};
use fred::types::config::{Options, Server};
use fred::types::{Builder, CustomCommand, Value};

/// How many times a listing starts over before it fails.
const ATTEMPTS: u32 = 10;
/// The pause before a new attempt, times the attempt's number: time for the cluster to settle.
const SETTLE: Duration = Duration::from_millis(50);
/// Redis Cluster's hash slots.
const SLOTS: usize = 16_384;
/// Keys asked of one `SCAN` page.
const PAGE: u32 = 1_000;

/// What one primary says of itself in `CLUSTER NODES`: id, flags, config epoch and slots
/// (`[slot->-id]` or `[slot-<-id]` while a slot migrates). Ping times are left out: they change
/// all the time and say nothing of where keys are.
#[derive(Debug, PartialEq, Eq)]
struct Claim {
    fields: Vec<String>,
}

impl Claim {
    fn parse(nodes: &str) -> Option<Claim> {
        let line = nodes.lines().find(|l| l.contains("myself"))?;
        let all: Vec<&str> = line.split_whitespace().collect();
        let mut fields: Vec<String> = [0, 2, 6]
            .iter()
            .map(|&i| all.get(i).map(|f| (*f).to_owned()))
            .collect::<Option<_>>()?;
        fields.extend(all.iter().skip(8).map(|f| (*f).to_owned()));
        Some(Claim { fields })
    }

    fn is_primary(&self) -> bool {
        self.fields[1].split(',').any(|f| f == "master")
    }

    fn slots(&self) -> &[String] {
        &self.fields[3..]
    }
}

/// Why a scan of these primaries could miss a key; `None` when none could.
fn unsettled(claims: &[Claim]) -> Option<String> {
    let mut owned = vec![false; SLOTS];
    for claim in claims {
        if !claim.is_primary() {
            return Some(format!("node {} is no longer a primary", claim.fields[0]));
        }
        for range in claim.slots() {
            if range.starts_with('[') {
                return Some(format!("slot {range} is migrating"));
            }
            let (start, end) = range.split_once('-').unwrap_or((range, range));
            let (Ok(start), Ok(end)) = (start.parse::<usize>(), end.parse::<usize>()) else {
                return Some(format!("unreadable slot range {range}"));
            };
            let end = end.min(SLOTS - 1);
            if start > end {
                return Some(format!("unreadable slot range {range}"));
            }
            for (slot, taken) in owned[start..=end].iter_mut().enumerate() {
                if std::mem::replace(taken, true) {
                    return Some(format!("slot {} is claimed twice", start + slot));
                }
            }
        }
    }
    let covered = owned.iter().filter(|o| **o).count();
    (covered != SLOTS).then(|| format!("the known primaries own {covered} of {SLOTS} slots"))
}

fn on(options: &Options, server: &Server) -> Options {
    Options {
        cluster_node: Some(server.clone()),
        ..options.clone()
    }
}

async fn claims(
    client: &Client,
    options: &Options,
    primaries: &[Server],
) -> Result<Vec<Claim>, FredError> {
    let mut claims = Vec::with_capacity(primaries.len());
    for server in primaries {
        let nodes: String = client
            .with_options(&on(options, server))
            .custom(
                CustomCommand::new_static("CLUSTER", None, false),
                vec!["NODES"],
            )
            .await?;
        claims.push(Claim::parse(&nodes).ok_or_else(|| {
            FredError::new(
                FredErrorKind::Protocol,
                format!("CLUSTER NODES of {server} has no line for itself"),
            )
        })?);
    }
    Ok(claims)
}

/// Every key matching `pattern` on one node, following `SCAN`'s cursor to its end.
async fn scan_node(
    client: &Client,
    options: &Options,
    server: &Server,
    pattern: &str,
    into: &mut Vec<String>,
) -> Result<(), FredError> {
    let node = client.with_options(&on(options, server));
    let mut cursor = String::from("0");
    loop {
        let (next, keys): (String, Vec<Value>) = node
            .scan_page(cursor, pattern.to_owned(), Some(PAGE), None)
            .await?;
        into.extend(keys.into_iter().filter_map(|k| k.into_string()));
        if next == "0" {
            return Ok(());
        }
        cursor = next;
    }
}

/// One attempt: the keys, or why they may be incomplete.
async fn attempt(
    client: &Client,
    options: &Options,
    pattern: &str,
) -> Result<Result<Vec<String>, String>, FredError> {
    // A cluster client's connections are to the primaries of its last `CLUSTER SLOTS`.
    let mut primaries = client.active_connections();
    primaries.sort_by(|a, b| (&a.host, a.port).cmp(&(&b.host, b.port)));
    let before = claims(client, options, &primaries).await?;
    if let Some(why) = unsettled(&before) {
        return Ok(Err(why));
    }
    let mut keys = Vec::new();
    for server in &primaries {
        scan_node(client, options, server, pattern, &mut keys).await?;
    }
    if claims(client, options, &primaries).await? != before {
        return Ok(Err("the topology changed during the listing".to_owned()));
    }
    Ok(Ok(keys))
}

/// A client like `like`, connected now: it reads the topology afresh. No reconnection policy:
/// it lives for one attempt.
async fn fresh(like: &Client) -> Result<Client, FredError> {
    let client = Builder::from_config(like.client_config())
        .set_connection_config(like.connection_config().clone())
        .set_performance_config(like.perf_config())
        .build()?;
    client.init().await?;
    Ok(client)
}

/// Every key matching `pattern` in the cluster, or an error (see the module's documentation).
pub(super) async fn list(
    client: &Client,
    options: &Options,
    pattern: &str,
) -> Result<Vec<String>, FredError> {
    let mut why = String::new();
    for n in 0..ATTEMPTS {
        let result = if n == 0 {
            attempt(client, options, pattern).await
        } else {
            tokio::time::sleep(SETTLE * n).await;
            match fresh(client).await {
                Ok(own) => {
                    let result = attempt(&own, options, pattern).await;
                    // Closing is best effort: the client is dropped either way.
                    let _ = own.quit().await;
                    result
                }
                Err(e) => Err(e),
            }
        };
        match result {
            Ok(Ok(keys)) => return Ok(keys),
            Ok(Err(reason)) => why = reason,
            Err(e) => why = e.to_string(),
        }
        tracing::debug!(attempt = n, why = %why, "cluster listing starts over");
    }
    Err(FredError::new(
        FredErrorKind::Cluster,
        format!("no complete listing after {ATTEMPTS} attempts: {why}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(line: &str) -> Claim {
        Claim::parse(line).expect("a myself line")
    }

    #[test]
    fn three_primaries_owning_every_slot_once_are_settled() {
        let claims = [
            claim("a 127.0.0.1:1@2 myself,master - 0 0 1 connected 0-5460"),
            claim("b 127.0.0.1:3@4 myself,master - 0 0 2 connected 5461-10922"),
            claim("c 127.0.0.1:5@6 myself,master - 0 0 3 connected 10923-16383"),
        ];
        assert_eq!(unsettled(&claims), None);
    }

    #[test]
    fn a_gap_a_migration_an_overlap_or_a_replica_is_unsettled() {
        let a = "a 127.0.0.1:1@2 myself,master - 0 0 1 connected 0-5460";
        let b = "b 127.0.0.1:3@4 myself,master - 0 0 2 connected 5461-10922";
        let cases = [
            (
                "c 127.0.0.1:5@6 myself,master - 0 0 3 connected 10923-16382",
                "16383 of",
            ),
            (
                "c 127.0.0.1:5@6 myself,master - 0 0 3 connected 10923-16383 [10923->-a]",
                "migrating",
            ),
            (
                "c 127.0.0.1:5@6 myself,master - 0 0 3 connected 5000-16383",
                "twice",
            ),
            (
                "c 127.0.0.1:5@6 myself,slave a 0 0 3 connected",
                "no longer",
            ),
        ];
        for (c, why) in cases {
            let found = unsettled(&[claim(a), claim(b), claim(c)]);
            assert!(
                found.as_deref().is_some_and(|f| f.contains(why)),
                "{c}: {found:?}"
            );
        }
    }

    #[test]
    fn ping_times_do_not_change_a_claim() {
        let before = claim("a 127.0.0.1:1@2 myself,master - 0 1700 1 connected 0-5460");
        let after = claim("a 127.0.0.1:1@2 myself,master - 0 1900 1 connected 0-5460");
        assert_eq!(before, after);
    }
}
