//! One circuit breaker per Redis Cluster node (`docs/guarantees.md#f2-circuit-breaker`).
//!
//! A cluster spreads the keys over its primaries, so a breaker for the whole layer would let one
//! dead primary close the layer to the keys of all the others. Each call is routed instead as
//! fred routes it: the physical key's hash slot, then the slot's primary in fred's cached cluster
//! state (the `CLUSTER SLOTS` view it refreshes on `MOVED` and on reconnection), and that node's
//! breaker admits and counts the call. A key whose node is not known (no cluster state yet, or a
//! slot no primary serves) goes through one breaker for such keys.
//!
//! The routing is read when the call starts. A call that fred redirects (`MOVED`, `ASK`) is
//! counted on the node it was routed to; fred re-reads the topology on `MOVED`, so the next calls
//! of that slot go through the breaker of its new node.
//!
//! The store also counts *takeovers* ([`Store::takeovers`](crate::store::Store::takeovers)): each
//! time one of its clients connects to a primary it had no connection to (fred's cluster-change
//! events, `Add`), such as a replica promoted by a failover, which may lack the writes its
//! primary acknowledged last. The events are read when the count is asked for, after a call: a
//! client that found the new primary while the call ran has told of it by the time the call
//! returns. A primary reconnected after a broken connection counts too; what that costs is a few
//! invalidations made twice.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use fred::interfaces::EventInterface as _;
use fred::prelude::{ClusterInterface, Pool};
use fred::types::ClusterStateChange;
use fred::types::config::Server;
use tokio::sync::broadcast::{self, error::TryRecvError};

use crate::config::BreakerConfig;
use crate::error::Result;
use crate::stats::CircuitStats;
use crate::store::circuit::Breaker;

/// One breaker and what it guards, for messages: `l3 redis-cluster on 127.0.0.1:7000`.
#[derive(Debug)]
struct NodeCircuit {
    name: String,
    breaker: Breaker,
}

impl NodeCircuit {
    fn new(name: String, config: BreakerConfig) -> Arc<Self> {
        Arc::new(NodeCircuit {
            name,
            breaker: Breaker::new(config),
        })
    }
}

/// The breakers of one cluster layer: one per primary seen so far, and one for keys whose node
/// is not known.
#[derive(Debug)]
pub(super) struct NodeCircuits {
    layer: &'static str,
    config: BreakerConfig,
    unknown: Arc<NodeCircuit>,
    /// Grows with the primaries the routing has named (a failover adds the promoted replica);
    /// a node that left keeps its entry, a few bytes.
    nodes: RwLock<HashMap<Server, Arc<NodeCircuit>>>,
    /// The cluster-change events of every client of the pool (module docs).
    changes: Mutex<Vec<broadcast::Receiver<Vec<ClusterStateChange>>>>,
    takeovers: AtomicU64,
}

impl NodeCircuits {
    #[cfg_attr(
        not(feature = "redis-cluster"),
        expect(dead_code, reason = "only a cluster layer has a breaker per node")
    )]
    pub(super) fn new(layer: &'static str, config: BreakerConfig) -> Self {
        NodeCircuits {
            layer,
            config,
            unknown: NodeCircuit::new(
                format!("{layer} redis-cluster on a node not yet known"),
                config,
            ),
            nodes: RwLock::new(HashMap::new()),
            changes: Mutex::new(Vec::new()),
            takeovers: AtomicU64::new(0),
        }
    }

    /// Listens to the cluster-change events of `pool`'s clients, before they connect.
    pub(super) fn watch(&self, pool: &Pool) {
        self.changes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(pool.clients().iter().map(|c| c.cluster_change_rx()));
    }

    /// How many times a client connected to a primary it had no connection to (module docs).
    pub(super) fn takeovers(&self) -> u64 {
        let mut added = 0;
        for changes in self
            .changes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter_mut()
        {
            loop {
                match changes.try_recv() {
                    Ok(changed) => {
                        added += u64::from(
                            changed
                                .iter()
                                .any(|c| matches!(c, ClusterStateChange::Add(_))),
                        );
                    }
                    // Events were missed: one of them may have been a takeover.
                    Err(TryRecvError::Lagged(_)) => added += 1,
                    Err(_) => break,
                }
            }
        }
        self.takeovers.fetch_add(added, Ordering::AcqRel) + added
    }

    /// The circuit of the primary that serves hash slot `slot`.
    fn circuit_of(&self, pool: &Pool, slot: u16) -> Arc<NodeCircuit> {
        let routing = pool.next().cached_cluster_state();
        let Some(server) = routing.as_ref().and_then(|r| r.get_server(slot)) else {
            return self.unknown.clone();
        };
        if let Some(circuit) = self
            .nodes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(server)
        {
            return circuit.clone();
        }
        self.nodes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(server.clone())
            .or_insert_with(|| {
                NodeCircuit::new(
                    format!("{} redis-cluster on {server}", self.layer),
                    self.config,
                )
            })
            .clone()
    }

    /// Runs `call`, a command on a key of hash slot `slot`, through its node's circuit.
    pub(super) async fn guard<T>(
        &self,
        pool: &Pool,
        slot: u16,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let circuit = self.circuit_of(pool, slot);
        circuit.breaker.admit(&circuit.name)?;
        circuit.breaker.record(call.await, &circuit.name)
    }

    /// Lets a scan go (it reaches every primary) while the circuit of no current primary is
    /// open: a listing that waits on a hung node would take its whole bound, many times a
    /// command's timeout. A scan never probes and is never counted (`store/circuit.rs`). Only
    /// the primaries of the current routing count: a node that left it (failed over) gets no
    /// more calls, so its circuit stays as it was and must not refuse scans for ever.
    pub(super) fn admit_scan(&self, pool: &Pool) -> Result<()> {
        self.unknown.breaker.admit_scan(&self.unknown.name)?;
        let primaries = pool
            .next()
            .cached_cluster_state()
            .map(|routing| routing.unique_primary_nodes())
            .unwrap_or_default();
        let nodes = self.nodes.read().unwrap_or_else(PoisonError::into_inner);
        for circuit in primaries.iter().filter_map(|server| nodes.get(server)) {
            circuit.breaker.admit_scan(&circuit.name)?;
        }
        Ok(())
    }

    /// Every breaker's figures: the one for unknown nodes first, then the nodes by name.
    pub(super) fn stats(&self) -> Vec<CircuitStats> {
        let mut nodes: Vec<CircuitStats> = self
            .nodes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(|c| c.breaker.stats(&c.name))
            .collect();
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        let mut all = vec![self.unknown.breaker.stats(&self.unknown.name)];
        all.extend(nodes);
        all
    }
}
