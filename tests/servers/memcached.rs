//! A `memcached` server, and a text-protocol helper.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::Path;
use std::time::Duration;

use super::{Daemon, READY_TIMEOUT, free_port, require_binary};

/// `memcached -l 127.0.0.1 -p P -U 0 -m 64` on a free loopback port (as root with `-u root`).
///
/// Its stdout/stderr go to `memcached.out` in a private temporary directory. Dropping it
/// SIGKILLs and reaps the process and removes the directory.
pub struct Memcached {
    daemon: Daemon,
}

impl std::fmt::Debug for Memcached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memcached")
            .field("port", &self.port())
            .finish_non_exhaustive()
    }
}

impl Memcached {
    /// Starts memcached and waits until `version` answers `VERSION ...`.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Like [`Memcached::start`], with extra `memcached` arguments appended (e.g. `&["-I",
    /// "2m"]`); a later `-m` overrides the default 64 MB.
    pub fn start_with(args: &[&str]) -> Self {
        let program = require_binary("memcached", "`apt-get install memcached`");
        let extra: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        let as_root = is_root();
        let args = Box::new(move |port: u16, _dir: &Path| {
            let mut argv: Vec<String> = ["-l", "127.0.0.1", "-p", &port.to_string(), "-U", "0"]
                .into_iter()
                .chain(["-m", "64"])
                .map(str::to_owned)
                .collect();
            if as_root {
                argv.extend(["-u".to_owned(), "root".to_owned()]);
            }
            argv.extend(extra.iter().cloned());
            argv
        });
        let ready = Box::new(|port: u16| {
            try_memcached_cmd(port, "version\r\n").is_ok_and(|r| r.starts_with("VERSION "))
        });
        let daemon = Daemon::start(
            "memcached",
            program,
            free_port,
            None,
            READY_TIMEOUT,
            args,
            ready,
        );
        Self { daemon }
    }

    /// The port it listens on (the same after [`Memcached::restart`]).
    pub fn port(&self) -> u16 {
        self.daemon.port()
    }

    /// `memcached://127.0.0.1:P`.
    pub fn url(&self) -> String {
        format!("memcached://127.0.0.1:{}", self.port())
    }

    /// The server process id; panics after [`Memcached::kill`].
    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    /// Whether the process runs (not killed).
    pub fn is_running(&self) -> bool {
        self.daemon.is_running()
    }

    /// Its output file (memcached logs to stderr).
    pub fn log(&self) -> &Path {
        self.daemon.log()
    }

    /// SIGKILLs the server; its data is lost.
    pub fn kill(&mut self) {
        self.daemon.stop();
    }

    /// SIGSTOPs the server (it hangs with connections open).
    pub fn pause(&self) {
        self.daemon.signal("STOP");
    }

    /// SIGCONTs a paused server.
    pub fn resume(&self) {
        self.daemon.signal("CONT");
    }

    /// Starts it again, empty, on the same port (killing it first if it still runs).
    pub fn restart(&mut self) {
        self.daemon.restart();
    }

    /// Sends raw text-protocol input (e.g. `"get k\r\n"`) and returns the raw reply.
    pub fn cmd(&self, input: &str) -> String {
        memcached_cmd(self.port(), input)
    }

    /// Whether this server holds the entry of `key` of a cache under `prefix`, in its current
    /// generation (read with the text protocol, as `store/memcached/names.rs` names it:
    /// `<prefix><gen>:e:<key>`).
    pub fn holds(&self, prefix: &str, key: &str) -> bool {
        let reply = self.cmd(&format!("get {prefix}gen\r\n"));
        let Some(generation) = reply.lines().nth(1) else {
            return false;
        };
        let reply = self.cmd(&format!("get {prefix}{generation}:e:{key}\r\n"));
        reply.starts_with("VALUE ")
    }
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Sends raw memcached text-protocol input to 127.0.0.1:`port` (one command, e.g.
/// `"set k 0 0 1\r\nv\r\n"` or `"get k\r\n"`) and returns the raw reply up to and including its
/// final line (`END`, `STORED`, `VERSION ...`, `HD`, an error, ...). Panics on I/O errors.
pub fn memcached_cmd(port: u16, input: &str) -> String {
    try_memcached_cmd(port, input)
        .unwrap_or_else(|e| panic!("memcached command {input:?} on 127.0.0.1:{port} failed: {e}"))
}

fn try_memcached_cmd(port: u16, input: &str) -> std::io::Result<String> {
    let stream = super::connect(port, Duration::from_secs(5))?;
    let mut writer = stream.try_clone()?;
    writer.write_all(input.as_bytes())?;
    let mut reader = BufReader::new(stream);
    let mut raw = Vec::new();
    loop {
        let mut line = Vec::new();
        reader.read_until(b'\n', &mut line)?;
        if line.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed mid-reply",
            ));
        }
        raw.extend_from_slice(&line);
        let text = String::from_utf8_lossy(&line).trim_end().to_owned();
        let mut words = text.split(' ');
        let head = words.next().unwrap_or_default();
        // A data block follows `VALUE key flags bytes [cas]` and `VA bytes flags...`.
        let data_len = match head {
            "VALUE" => text.split(' ').nth(3),
            "VA" => words.next(),
            _ => None,
        };
        if let Some(len) = data_len {
            let len: usize = len
                .parse()
                .map_err(|_| std::io::Error::other(format!("bad data length in {text:?}")))?;
            let mut body = vec![0; len + 2];
            reader.read_exact(&mut body)?;
            raw.extend_from_slice(&body);
        }
        // `VALUE` and `STAT` lines are followed by more; everything else ends the reply.
        if head != "VALUE" && head != "STAT" {
            return Ok(String::from_utf8_lossy(&raw).into_owned());
        }
    }
}
