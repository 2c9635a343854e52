//! A standalone `redis-server`, and the RESP / `redis-cli` helpers tests use to inspect servers.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{Daemon, READY_TIMEOUT, free_port, require_binary};

const INSTALL_REDIS: &str = "`apt-get install redis-server redis-tools`";

/// `redis-server` on a free loopback port, no persistence, in a private temporary directory.
///
/// Dropping it SIGKILLs and reaps the process and removes the directory.
pub struct RedisServer {
    daemon: Daemon,
    auth: Option<(String, String)>,
}

impl std::fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisServer")
            .field("port", &self.port())
            .field("dir", &self.daemon.dir())
            .finish_non_exhaustive()
    }
}

impl RedisServer {
    /// Starts `redis-server --port P --bind 127.0.0.1 --save "" --appendonly no` and waits until
    /// `PING` answers `+PONG`.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Like [`RedisServer::start`], with extra `redis-server` arguments appended (e.g.
    /// `&["--maxmemory", "1mb"]`).
    pub fn start_with(args: &[&str]) -> Self {
        Self::launch(free_port, args, None)
    }

    /// A server whose only enabled user is `user` with `password` (all keys, channels and
    /// commands), set in a generated `redis.conf` so it survives [`RedisServer::restart`]. The
    /// `default` user is disabled: connections must authenticate (use [`RedisServer::cmd`], which
    /// does; the bare [`redis_cmd`] gets `-NOAUTH`). [`RedisServer::url`] carries the credentials.
    pub fn start_with_acl(user: &str, password: &str) -> Self {
        assert!(
            !user.contains(char::is_whitespace) && !password.contains(char::is_whitespace),
            "ACL user and password must not contain whitespace"
        );
        Self::launch(free_port, &[], Some((user.to_owned(), password.to_owned())))
    }

    /// Starts a server on a port `choose_port` gives (cluster nodes pick ports whose bus port is
    /// free too).
    pub(crate) fn launch(
        choose_port: fn() -> u16,
        args: &[&str],
        auth: Option<(String, String)>,
    ) -> Self {
        let program = require_binary("redis-server", INSTALL_REDIS);
        let extra: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        let conf_auth = auth.clone();
        let args = Box::new(move |port: u16, dir: &Path| {
            let mut argv = Vec::new();
            if let Some((user, password)) = &conf_auth {
                // The config file must be the first argument.
                let conf = dir.join("redis.conf");
                std::fs::write(
                    &conf,
                    format!("user default off\nuser {user} on >{password} ~* &* +@all\n"),
                )
                .expect("write redis.conf");
                argv.push(conf.display().to_string());
            }
            for arg in [
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                &dir.display().to_string(),
                "--logfile",
                &dir.join("redis.log").display().to_string(),
            ] {
                argv.push(arg.to_owned());
            }
            argv.extend(extra.iter().cloned());
            argv
        });
        let probe_auth = auth.clone();
        let ready = Box::new(move |port: u16| {
            let auth = probe_auth.as_ref().map(|(u, p)| (u.as_str(), p.as_str()));
            try_redis_cmd(port, auth, &["PING"]).is_ok_and(|reply| reply == "+PONG\r\n")
        });
        let daemon = Daemon::start(
            "redis",
            program,
            choose_port,
            Some("redis.log"),
            READY_TIMEOUT,
            args,
            ready,
        );
        Self { daemon, auth }
    }

    /// The port it listens on (the same after [`RedisServer::restart`]).
    pub fn port(&self) -> u16 {
        self.daemon.port()
    }

    /// `redis://127.0.0.1:P/0`, or `redis://user:password@127.0.0.1:P/0` for an ACL server.
    pub fn url(&self) -> String {
        match &self.auth {
            Some((user, password)) => {
                format!("redis://{user}:{password}@127.0.0.1:{}/0", self.port())
            }
            None => format!("redis://127.0.0.1:{}/0", self.port()),
        }
    }

    /// The server process id; panics after [`RedisServer::kill`].
    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    /// Whether the process runs (not killed).
    pub fn is_running(&self) -> bool {
        self.daemon.is_running()
    }

    /// Its temporary directory (holds `redis.log`).
    pub fn dir(&self) -> &Path {
        self.daemon.dir()
    }

    /// The server's log file.
    pub fn log(&self) -> &Path {
        self.daemon.log()
    }

    /// SIGKILLs the server (a crash: no shutdown, connections reset). Its data is lost.
    pub fn kill(&mut self) {
        self.daemon.stop();
    }

    /// SIGSTOPs the server: connections stay open but nothing answers (a hang / GC pause).
    pub fn pause(&self) {
        self.daemon.signal("STOP");
    }

    /// SIGCONTs a paused server.
    pub fn resume(&self) {
        self.daemon.signal("CONT");
    }

    /// Starts the server again on the same port (killing it first if it still runs) and waits
    /// until it answers. It comes back empty (no persistence).
    pub fn restart(&mut self) {
        self.daemon.restart();
    }

    /// Runs a command on this server (authenticating first on an ACL server); the raw RESP reply.
    pub fn cmd(&self, args: &[&str]) -> String {
        let auth = self.auth.as_ref().map(|(u, p)| (u.as_str(), p.as_str()));
        try_redis_cmd(self.port(), auth, args).unwrap_or_else(|e| {
            panic!(
                "redis command {args:?} on 127.0.0.1:{} failed: {e} (log: {})",
                self.port(),
                self.log().display()
            )
        })
    }
}

/// Sends one command to the Redis on 127.0.0.1:`port` and returns the raw RESP reply text, e.g.
/// `"+PONG\r\n"`, `"$1\r\nv\r\n"`, `"*2\r\n$1\r\na\r\n$1\r\nb\r\n"` or `"-ERR ...\r\n"`. Panics
/// if the server cannot be reached.
pub fn redis_cmd(port: u16, args: &[&str]) -> String {
    try_redis_cmd(port, None, args)
        .unwrap_or_else(|e| panic!("redis command {args:?} on 127.0.0.1:{port} failed: {e}"))
}

/// [`redis_cmd`] that returns I/O errors instead of panicking, optionally sending
/// `AUTH user password` first (its reply must be `+OK`).
pub fn try_redis_cmd(
    port: u16,
    auth: Option<(&str, &str)>,
    args: &[&str],
) -> std::io::Result<String> {
    let stream = super::connect(port, Duration::from_secs(5))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    if let Some((user, password)) = auth {
        writer.write_all(&encode(&["AUTH", user, password]))?;
        let reply = read_reply(&mut reader)?;
        if reply != "+OK\r\n" {
            return Err(std::io::Error::other(format!("AUTH failed: {reply}")));
        }
    }
    writer.write_all(&encode(args))?;
    read_reply(&mut reader)
}

fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reads one complete RESP2/RESP3 reply and returns its raw text.
fn read_reply(reader: &mut BufReader<std::net::TcpStream>) -> std::io::Result<String> {
    let mut raw = Vec::new();
    read_value(reader, &mut raw)?;
    Ok(String::from_utf8_lossy(&raw).into_owned())
}

fn read_value(
    reader: &mut BufReader<std::net::TcpStream>,
    raw: &mut Vec<u8>,
) -> std::io::Result<()> {
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line)?;
    if !line.ends_with(b"\r\n") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed mid-reply",
        ));
    }
    raw.extend_from_slice(&line);
    let kind = line[0];
    let number = || -> std::io::Result<i64> {
        std::str::from_utf8(&line[1..line.len() - 2])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other("bad RESP length"))
    };
    match kind {
        b'$' | b'=' | b'!' => {
            let len = number()?;
            if len >= 0 {
                let mut body = vec![0; usize::try_from(len).unwrap() + 2];
                reader.read_exact(&mut body)?;
                raw.extend_from_slice(&body);
            }
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let count = number()?;
            let per = if matches!(kind, b'%' | b'|') { 2 } else { 1 };
            for _ in 0..count.max(0) * per {
                read_value(reader, raw)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Runs `redis-cli -h 127.0.0.1 -p PORT ARGS...` (e.g. `&["-c", "SET", "k", "v"]` to follow
/// cluster redirections) and returns its stdout; panics if it cannot run or fails.
pub fn redis_cli(port: u16, args: &[&str]) -> String {
    let program: PathBuf = require_binary("redis-cli", INSTALL_REDIS);
    let output = Command::new(&program)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("run redis-cli");
    assert!(
        output.status.success(),
        "redis-cli -p {port} {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
