//! A local Redis Cluster: `masters × (1 + replicas_per_master)` `redis-server` nodes joined with
//! `redis-cli --cluster create`.

use std::time::{Duration, Instant};

use super::{POLL, RedisServer, free_cluster_port, require_binary, run_captured, try_redis_cmd};

/// How long `redis-cli --cluster create` and each wait for a healthy cluster may take.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(20);

/// The per-node arguments. `repl-diskless-sync-delay 0`: Redis 7 otherwise waits 5 s before a
/// replica's first sync, and a master that fails before its replica synced is never failed over.
const NODE_ARGS: &[&str] = &[
    "--cluster-enabled",
    "yes",
    "--cluster-config-file",
    "nodes.conf",
    "--cluster-node-timeout",
    "1000",
    "--repl-diskless-sync-delay",
    "0",
];

/// A Redis Cluster on loopback. Node `i` is [`RedisCluster::nodes`]`()[i]`; the first `masters`
/// nodes start as primaries. Dropping it stops every node and removes their directories.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    masters: usize,
}

impl RedisCluster {
    /// Starts `masters` (at least 3) primaries with `replicas_per_master` replicas each, creates
    /// the cluster, and waits until every node reports `cluster_state:ok` with all 16384 slots
    /// assigned and every replica's link to its primary is up ([`RedisCluster::wait_ok`]).
    pub fn start(masters: usize, replicas_per_master: usize) -> Self {
        Self::start_with(masters, replicas_per_master, &[])
    }

    /// Like [`RedisCluster::start`], with extra `redis-server` arguments for every node (e.g.
    /// `&["--cluster-require-full-coverage", "no"]`, so that the other primaries keep serving
    /// their slots while one without a replica is down).
    pub fn start_with(masters: usize, replicas_per_master: usize, args: &[&str]) -> Self {
        let cluster = Self::create(masters, replicas_per_master, args);
        cluster.wait_ok();
        cluster
    }

    /// Like [`RedisCluster::start`], but returns as soon as every node answers
    /// `cluster_state:ok`: what an operator sees right after `redis-cli --cluster create`, while
    /// the nodes' views of each other (addresses, replicas, links) may still be settling.
    pub fn start_fresh(masters: usize, replicas_per_master: usize) -> Self {
        let cluster = Self::create(masters, replicas_per_master, &[]);
        let deadline = Instant::now() + CLUSTER_TIMEOUT;
        for node in &cluster.nodes {
            while !node
                .cmd(&["CLUSTER", "INFO"])
                .contains("cluster_state:ok\r\n")
            {
                assert!(
                    Instant::now() < deadline,
                    "node {} not cluster_state:ok after {CLUSTER_TIMEOUT:?}",
                    node.port()
                );
                std::thread::sleep(POLL);
            }
        }
        cluster
    }

    /// Starts the nodes (with `args` after [`NODE_ARGS`]) and runs `redis-cli --cluster create`;
    /// waits for nothing more.
    fn create(masters: usize, replicas_per_master: usize, args: &[&str]) -> Self {
        assert!(
            masters >= 3,
            "redis-cli --cluster create needs at least 3 masters"
        );
        let total = masters * (1 + replicas_per_master);
        let node_args: Vec<&str> = NODE_ARGS.iter().chain(args).copied().collect();
        // Start the nodes in parallel: each start is mostly waiting.
        let nodes: Vec<RedisServer> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..total)
                .map(|_| scope.spawn(|| RedisServer::launch(free_cluster_port, &node_args, None)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a cluster node failed to start"))
                .collect()
        });
        let cluster = Self { nodes, masters };
        let cli = require_binary("redis-cli", "`apt-get install redis-tools`");
        let mut args = vec!["--cluster".to_owned(), "create".to_owned()];
        args.extend(
            cluster
                .nodes
                .iter()
                .map(|n| format!("127.0.0.1:{}", n.port())),
        );
        args.extend([
            "--cluster-replicas".to_owned(),
            replicas_per_master.to_string(),
            "--cluster-yes".to_owned(),
        ]);
        let out_file = cluster.nodes[0].dir().join("cluster-create.out");
        let (ok, output) = run_captured(&cli, &args, &out_file, CLUSTER_TIMEOUT);
        assert!(
            ok && output.contains("[OK] All 16384 slots covered"),
            "redis-cli --cluster create failed (ports {:?}):\n{output}",
            cluster.ports()
        );
        cluster
    }

    /// `redis://127.0.0.1:P` for every node: seed URLs for a cluster client.
    pub fn urls(&self) -> Vec<String> {
        self.ports()
            .into_iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }

    /// The nodes, in start order (the index used by [`RedisCluster::kill_node`]).
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// The ports of all nodes, in node order.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(RedisServer::port).collect()
    }

    /// SIGKILLs node `i`. With a replica, its primary role fails over after ~2 s
    /// (`cluster-node-timeout 1000`); [`RedisCluster::wait_ok`] waits for that.
    pub fn kill_node(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// SIGSTOPs node `i` (it hangs with connections open); [`RedisCluster::resume_node`] undoes.
    pub fn pause_node(&self, i: usize) {
        self.nodes[i].pause();
    }

    /// SIGCONTs a paused node `i`.
    pub fn resume_node(&self, i: usize) {
        self.nodes[i].resume();
    }

    /// Starts node `i` again on its port with its `nodes.conf` (so it rejoins; its data is gone),
    /// then waits for the whole cluster to be healthy ([`RedisCluster::wait_ok`]).
    pub fn restart_node(&mut self, i: usize) {
        self.nodes[i].restart();
        self.wait_ok();
    }

    /// Waits until every running node reports `cluster_state:ok`, 16384 slots assigned and ok,
    /// knows all nodes, flags no running node as failing, sees the same `masters` slot-owning
    /// primaries as the others, and (for a replica) has `master_link_status:up`. Panics after
    /// 20 s. A paused node counts as running, so this does not return while one is paused.
    pub fn wait_ok(&self) {
        let deadline = Instant::now() + CLUSTER_TIMEOUT;
        loop {
            let problem = self.health_problem();
            let Some(problem) = problem else { return };
            assert!(
                Instant::now() < deadline,
                "Redis Cluster (ports {:?}) not healthy after {CLUSTER_TIMEOUT:?}: {problem} \
                 (node logs: {:?})",
                self.ports(),
                self.nodes.iter().map(RedisServer::log).collect::<Vec<_>>()
            );
            std::thread::sleep(POLL * 5);
        }
    }

    /// `None` when healthy, otherwise what is not yet.
    fn health_problem(&self) -> Option<String> {
        let total = self.nodes.len();
        let running: Vec<u16> = self
            .nodes
            .iter()
            .filter(|n| n.is_running())
            .map(RedisServer::port)
            .collect();
        let mut first_view: Option<Vec<u16>> = None;
        for node in self.nodes.iter().filter(|n| n.is_running()) {
            let port = node.port();
            let info = match try_redis_cmd(port, None, &["CLUSTER", "INFO"]) {
                Ok(info) => info,
                Err(e) => return Some(format!("node {port}: {e}")),
            };
            for wanted in [
                "cluster_state:ok".to_owned(),
                "cluster_slots_assigned:16384".to_owned(),
                "cluster_slots_ok:16384".to_owned(),
                format!("cluster_known_nodes:{total}"),
            ] {
                if !info.contains(&format!("{wanted}\r\n")) {
                    return Some(format!("node {port}: no `{wanted}` in CLUSTER INFO"));
                }
            }
            let nodes = match try_redis_cmd(port, None, &["CLUSTER", "NODES"]) {
                Ok(text) => text,
                Err(e) => return Some(format!("node {port}: {e}")),
            };
            // Its view must agree with reality: no running node flagged failing, and the same
            // primaries as the other running nodes see.
            for line in nodes.lines() {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let (Some(addr), Some(flags)) = (fields.get(1), fields.get(2)) else {
                    continue;
                };
                let Some(peer) = node_port(addr) else {
                    continue;
                };
                let bad = flags
                    .split(',')
                    .any(|f| matches!(f, "fail" | "fail?" | "handshake" | "noaddr"));
                if bad && running.contains(&peer) {
                    return Some(format!("node {port} sees running node {peer} as {flags}"));
                }
            }
            let view = primaries_in(&nodes);
            if view.len() != self.masters {
                return Some(format!("node {port} sees primaries {view:?}"));
            }
            match &first_view {
                None => first_view = Some(view),
                Some(first) if *first != view => {
                    return Some(format!(
                        "node {port} sees primaries {view:?}, another node {first:?}"
                    ));
                }
                Some(_) => {}
            }
            let replication = match try_redis_cmd(port, None, &["INFO", "replication"]) {
                Ok(text) => text,
                Err(e) => return Some(format!("node {port}: {e}")),
            };
            if replication.contains("role:slave") && !replication.contains("master_link_status:up")
            {
                return Some(format!("replica {port}: link to its primary not up"));
            }
        }
        None
    }

    /// The ports of the current primaries that own slots (from `CLUSTER NODES` on a running
    /// node; failed nodes excluded), sorted.
    pub fn primaries(&self) -> Vec<u16> {
        let node = self
            .nodes
            .iter()
            .find(|n| n.is_running())
            .expect("no running cluster node");
        primaries_in(&node.cmd(&["CLUSTER", "NODES"]))
    }

    /// The ports of the running replicas (`role:slave`), sorted.
    pub fn replicas(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self
            .nodes
            .iter()
            .filter(|n| n.is_running() && n.cmd(&["INFO", "replication"]).contains("role:slave"))
            .map(RedisServer::port)
            .collect();
        ports.sort_unstable();
        ports
    }

    /// The cluster id of the node on `port` (`CLUSTER MYID`).
    pub fn node_id(&self, port: u16) -> String {
        let reply = self.node_on(port).cmd(&["CLUSTER", "MYID"]);
        // A bulk string: `$40\r\n<id>\r\n`.
        reply
            .lines()
            .nth(1)
            .unwrap_or_else(|| panic!("CLUSTER MYID on {port}: {reply}"))
            .to_owned()
    }

    /// Starts `redis-cli --cluster reshard`, moving `slots` hash slots from the primary on `from`
    /// to the primary on `to`: each slot goes MIGRATING/IMPORTING, its keys move with `MIGRATE`
    /// (clients get `ASK` meanwhile), then ownership changes (clients get `MOVED`). It runs beside
    /// the test; [`Reshard::finish`] waits for it.
    pub fn begin_reshard(&self, from: u16, to: u16, slots: usize) -> Reshard {
        let cli = require_binary("redis-cli", "`apt-get install redis-tools`");
        let out_file = self.node_on(from).dir().join(format!("reshard-{to}.out"));
        let out = std::fs::File::create(&out_file).expect("create the reshard output file");
        let err = out.try_clone().expect("clone the output file handle");
        let child = std::process::Command::new(cli)
            .args(["--cluster", "reshard", &format!("127.0.0.1:{from}")])
            .args(["--cluster-from", &self.node_id(from)])
            .args(["--cluster-to", &self.node_id(to)])
            .args(["--cluster-slots", &slots.to_string(), "--cluster-yes"])
            .stdin(std::process::Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn redis-cli --cluster reshard");
        Reshard { child, out_file }
    }

    /// `CLUSTER FAILOVER` on the replica on `port`: a coordinated failover (its primary stops
    /// writes until the replica caught up, then the replica takes the slots and the old primary
    /// answers `MOVED`). Returns once the command is accepted; [`RedisCluster::wait_ok`] and
    /// [`RedisCluster::primaries`] show when it is done.
    pub fn failover(&self, port: u16) {
        let reply = self.node_on(port).cmd(&["CLUSTER", "FAILOVER"]);
        assert_eq!(reply, "+OK\r\n", "CLUSTER FAILOVER on {port}");
    }

    fn node_on(&self, port: u16) -> &RedisServer {
        self.nodes
            .iter()
            .find(|n| n.port() == port)
            .unwrap_or_else(|| panic!("no cluster node on port {port}"))
    }
}

/// A `redis-cli --cluster reshard` running beside the test ([`RedisCluster::begin_reshard`]).
/// Dropping it unfinished kills it.
#[derive(Debug)]
pub struct Reshard {
    child: std::process::Child,
    out_file: std::path::PathBuf,
}

impl Reshard {
    /// Whether it is still moving slots.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for it (at most `CLUSTER_TIMEOUT`); panics with its output unless it succeeded.
    pub fn finish(mut self) {
        let deadline = Instant::now() + CLUSTER_TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("poll redis-cli") {
                break Some(status);
            }
            if Instant::now() >= deadline {
                break None;
            }
            std::thread::sleep(POLL);
        };
        let output = std::fs::read_to_string(&self.out_file).unwrap_or_default();
        assert!(
            status.is_some_and(|s| s.success()),
            "redis-cli --cluster reshard failed ({status:?}):\n{output}"
        );
    }
}

impl Drop for Reshard {
    fn drop(&mut self) {
        if self.is_running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The port in a `CLUSTER NODES` address: `127.0.0.1:PORT@BUS` (Redis 7 may append `,hostname`).
fn node_port(addr: &str) -> Option<u16> {
    addr.split(['@', ','])
        .next()?
        .rsplit(':')
        .next()?
        .parse()
        .ok()
}

/// The ports of the slot-owning, non-failed primaries in a `CLUSTER NODES` reply, sorted.
fn primaries_in(text: &str) -> Vec<u16> {
    let mut ports: Vec<u16> = text
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let flags = *fields.get(2)?;
            let is_primary = flags.split(',').any(|f| f == "master");
            let failed = flags.split(',').any(|f| f == "fail" || f == "fail?");
            if !is_primary || failed || fields.len() < 9 {
                return None;
            }
            node_port(fields[1])
        })
        .collect();
    ports.sort_unstable();
    ports
}
