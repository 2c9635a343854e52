//! Tests of the real-server harness itself (`vorte_cache_tests::servers`): every server starts,
//! answers, restarts on its port, and is gone once its handle drops.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    missing_docs,
    reason = "tests fail loudly"
)]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use vorte_cache_tests::servers::{
    Memcached, MotoServer, RedisCluster, RedisServer, free_port, http_request, memcached_cmd,
    port_accepts, redis_cli, redis_cmd,
};

/// Runs `f`, printing how long it took (visible with `--nocapture`).
fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let value = f();
    eprintln!("[harness] {what}: {:?}", start.elapsed());
    value
}

/// A port stops accepting connections shortly after its server died.
fn assert_closed(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while port_accepts(port) {
        assert!(
            Instant::now() < deadline,
            "{what}: port {port} still accepts connections"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_starts_answers_and_stops() {
    let server = timed("RedisServer::start", RedisServer::start);
    let port = server.port();
    assert_eq!(server.url(), format!("redis://127.0.0.1:{port}/0"));
    assert_ne!(port, 6379, "never the machine's shared redis");
    assert_eq!(redis_cmd(port, &["PING"]), "+PONG\r\n");
    assert_eq!(redis_cmd(port, &["SET", "k", "v"]), "+OK\r\n");
    assert_eq!(redis_cmd(port, &["GET", "k"]), "$1\r\nv\r\n");
    assert_eq!(redis_cmd(port, &["GET", "missing"]), "$-1\r\n");
    assert_eq!(redis_cmd(port, &["KEYS", "*"]), "*1\r\n$1\r\nk\r\n");
    assert!(redis_cmd(port, &["INFO", "commandstats"]).contains("cmdstat_set:calls=1,"));
    assert!(redis_cmd(port, &["NOSUCHCOMMAND"]).starts_with("-ERR"));
    // No persistence, private directory.
    let config = redis_cmd(port, &["CONFIG", "GET", "save"]);
    assert!(config.ends_with("$0\r\n\r\n"), "{config}");
    let dir = server.dir().to_path_buf();
    assert!(server.log().exists());
    drop(server);
    assert_closed(port, "dropped RedisServer");
    assert!(!dir.exists(), "the temporary directory is removed");
}

#[test]
fn redis_start_with_extra_args() {
    let server = RedisServer::start_with(&["--maxmemory", "2mb"]);
    let reply = server.cmd(&["CONFIG", "GET", "maxmemory"]);
    assert!(reply.contains("$7\r\n2097152\r\n"), "{reply}");
}

#[test]
fn concurrent_redis_servers_get_distinct_ports() {
    let start = Instant::now();
    let servers: Vec<RedisServer> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4).map(|_| scope.spawn(RedisServer::start)).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    eprintln!(
        "[harness] 4 concurrent RedisServer::start: {:?}",
        start.elapsed()
    );
    let ports: HashSet<u16> = servers.iter().map(RedisServer::port).collect();
    assert_eq!(ports.len(), 4, "ports {ports:?}");
    for server in &servers {
        assert_eq!(redis_cmd(server.port(), &["PING"]), "+PONG\r\n");
    }
    // Each is its own server: a key set on one is absent from the others.
    redis_cmd(servers[0].port(), &["SET", "only-here", "1"]);
    for server in &servers[1..] {
        assert_eq!(redis_cmd(server.port(), &["KEYS", "*"]), "*0\r\n");
    }
}

#[test]
fn free_ports_are_never_handed_out_twice() {
    let ports: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| (0..25).map(|_| free_port()).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let unique: HashSet<u16> = ports.iter().copied().collect();
    assert_eq!(unique.len(), ports.len());
}

#[test]
fn redis_kill_and_restart_keep_the_port() {
    let mut server = RedisServer::start();
    let port = server.port();
    let pid = server.pid();
    redis_cmd(port, &["SET", "k", "v"]);
    server.kill();
    assert!(!server.is_running());
    assert_closed(port, "killed RedisServer");
    timed("RedisServer::restart", || server.restart());
    assert_eq!(server.port(), port);
    assert_ne!(server.pid(), pid);
    assert_eq!(redis_cmd(port, &["PING"]), "+PONG\r\n");
    assert_eq!(redis_cmd(port, &["GET", "k"]), "$-1\r\n", "no persistence");
    // restart() on a running server also works (kills it first).
    server.restart();
    assert_eq!(redis_cmd(port, &["PING"]), "+PONG\r\n");
}

#[test]
fn redis_pause_and_resume() {
    use std::io::{Read as _, Write as _};
    let server = RedisServer::start();
    server.pause();
    // Stopped: the kernel still accepts the connection, but nothing answers.
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", server.port())).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    stream.write_all(b"PING\r\n").unwrap();
    let mut buf = [0; 16];
    assert!(
        stream.read(&mut buf).is_err(),
        "a paused server does not answer"
    );
    server.resume();
    let n = stream.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"+PONG\r\n");
    assert_eq!(server.cmd(&["PING"]), "+PONG\r\n");
}

#[test]
fn redis_with_acl_requires_the_user() {
    let mut server = timed("RedisServer::start_with_acl", || {
        RedisServer::start_with_acl("vorte", "s3cret")
    });
    let port = server.port();
    assert_eq!(
        server.url(),
        format!("redis://vorte:s3cret@127.0.0.1:{port}/0")
    );
    assert!(redis_cmd(port, &["PING"]).starts_with("-NOAUTH"));
    assert_eq!(server.cmd(&["SET", "k", "v"]), "+OK\r\n");
    assert_eq!(server.cmd(&["ACL", "WHOAMI"]), "$5\r\nvorte\r\n");
    let wrong = vorte_cache_tests::servers::try_redis_cmd(port, Some(("vorte", "nope")), &["PING"]);
    assert!(wrong.is_err(), "a wrong password is refused");
    server.restart();
    assert_eq!(
        server.cmd(&["PING"]),
        "+PONG\r\n",
        "the ACL survives a restart"
    );
    assert!(redis_cmd(port, &["PING"]).starts_with("-NOAUTH"));
}

#[test]
fn redis_cluster_three_masters_with_failover() {
    let mut cluster = timed("RedisCluster::start(3, 1)", || RedisCluster::start(3, 1));
    assert_eq!(cluster.nodes().len(), 6);
    assert_eq!(cluster.urls().len(), 6);
    assert!(cluster.urls()[0].starts_with("redis://127.0.0.1:"));
    let primaries = cluster.primaries();
    assert_eq!(primaries.len(), 3, "{primaries:?}");
    // Each primary owns slots: its own line in CLUSTER NODES lists slot ranges.
    for &port in &primaries {
        let nodes = redis_cmd(port, &["CLUSTER", "NODES"]);
        let own = nodes.lines().find(|l| l.contains("myself")).unwrap();
        assert!(
            own.split_whitespace().count() > 8,
            "{port} owns no slots: {own}"
        );
    }
    // SET/GET through redis-cli -c (follows MOVED redirections).
    for key in ["a", "b", "c", "user:1", "user:2"] {
        let seed = cluster.nodes()[0].port();
        assert_eq!(redis_cli(seed, &["-c", "SET", key, "v"]).trim(), "OK");
        assert_eq!(redis_cli(seed, &["-c", "GET", key]).trim(), "v");
    }
    // Keys spread over several primaries.
    let holding = primaries
        .iter()
        .filter(|&&p| redis_cmd(p, &["DBSIZE"]) != ":0\r\n")
        .count();
    assert!(holding >= 2, "keys on {holding} primaries");

    // Kill a primary: its replica takes over; then the old primary rejoins as a replica.
    let victim = cluster
        .nodes()
        .iter()
        .position(|n| n.port() == primaries[0])
        .unwrap();
    cluster.kill_node(victim);
    timed("failover after kill_node (wait_ok)", || cluster.wait_ok());
    let after = cluster.primaries();
    assert_eq!(after.len(), 3, "{after:?}");
    assert!(!after.contains(&primaries[0]), "{after:?}");
    timed("restart_node", || cluster.restart_node(victim));
    assert!(
        !cluster.primaries().contains(&primaries[0]),
        "rejoined as a replica"
    );
    let seed = cluster.nodes()[victim].port();
    assert_eq!(redis_cli(seed, &["-c", "SET", "after", "1"]).trim(), "OK");

    let ports = cluster.ports();
    drop(cluster);
    for port in ports {
        assert_closed(port, "dropped RedisCluster node");
    }
}

#[test]
fn memcached_set_get_restart_and_stop() {
    let mut server = timed("Memcached::start", Memcached::start);
    let port = server.port();
    assert_eq!(server.url(), format!("memcached://127.0.0.1:{port}"));
    assert!(memcached_cmd(port, "version\r\n").starts_with("VERSION "));
    assert_eq!(
        memcached_cmd(port, "set k 0 0 5\r\nhello\r\n"),
        "STORED\r\n"
    );
    assert_eq!(
        memcached_cmd(port, "get k\r\n"),
        "VALUE k 0 5\r\nhello\r\nEND\r\n"
    );
    assert_eq!(server.cmd("get missing\r\n"), "END\r\n");
    let pid = server.pid();
    server.kill();
    assert_closed(port, "killed Memcached");
    timed("Memcached::restart", || server.restart());
    assert_eq!(server.port(), port);
    assert_ne!(server.pid(), pid);
    assert_eq!(server.cmd("get k\r\n"), "END\r\n", "restart empties it");
    drop(server);
    assert_closed(port, "dropped Memcached");
}

#[test]
fn moto_has_the_bucket_and_restarts_empty() {
    let mut server = timed("MotoServer::start", MotoServer::start);
    let port = server.port();
    assert_eq!(server.endpoint(), format!("http://127.0.0.1:{port}"));
    assert_eq!(server.bucket(), "vorte-test");
    let (status, answer) = http_request(port, "GET", "/vorte-test", b"");
    assert_eq!(status, 200, "{answer}");
    let (status, _) = http_request(port, "PUT", "/vorte-test/obj", b"payload");
    assert_eq!(status, 200);
    let (status, answer) = http_request(port, "GET", "/vorte-test/obj", b"");
    assert_eq!(status, 200);
    assert!(answer.ends_with("payload"), "{answer}");
    assert_eq!(http_request(port, "GET", "/no-such-bucket", b"").0, 404);

    timed("MotoServer::restart", || server.restart());
    assert_eq!(server.port(), port);
    assert_eq!(http_request(port, "GET", "/vorte-test", b"").0, 200);
    assert_eq!(
        http_request(port, "GET", "/vorte-test/obj", b"").0,
        404,
        "moto is in-memory: objects are gone after a restart"
    );
    drop(server);
    assert_closed(port, "dropped MotoServer");
}

#[test]
fn a_server_that_cannot_start_names_itself_and_its_log() {
    let panic = std::panic::catch_unwind(|| RedisServer::start_with(&["--no-such-option", "x"]))
        .expect_err("a bad option fails the start");
    let message = panic
        .downcast_ref::<String>()
        .expect("a formatted panic message");
    assert!(
        message.contains("test server `redis` on 127.0.0.1:"),
        "{message}"
    );
    assert!(message.contains("exited early"), "{message}");
    assert!(
        message.contains("no-such-option"),
        "the log tail: {message}"
    );
    // The directory is kept for the log; clean it up here.
    let kept = message.rsplit("(directory kept: ").next().unwrap();
    let kept = kept.trim_end_matches(')');
    assert!(
        std::path::Path::new(kept).join("redis.out").exists(),
        "{kept}"
    );
    std::fs::remove_dir_all(kept).unwrap();
}
