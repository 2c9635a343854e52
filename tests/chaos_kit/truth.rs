//! The workload's database: a `redis-server` of the test's own that no fault touches, spoken to
//! with a minimal async RESP client.
//!
//! Under the prefix `P`: `P v:KEY` is the key's version (a counter); `P d:KEY` is a hash from each
//! version to the [`WriteRecord`] of the write that made it. `chaos:fail` set to `1` makes every
//! loader fail (the fail-safe row): one switch for every prefix, since each run has a database of
//! its own.

use std::collections::BTreeMap;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// The database key of the loader's failure switch.
const FAIL_SWITCH: &str = "chaos:fail";

/// What kind of write made a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    /// A `set` of the new version: it is in the cache once the call returned.
    Set,
    /// A `delete` or an `invalidate_tag`: the key's older versions are gone once it returned.
    Invalidate,
    /// The call failed: it neither wrote nor surely invalidated.
    Failed,
}

/// When a write that bumped a key ran, on the database's clock (µs), and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteRecord {
    /// Before the bump.
    pub start_us: u64,
    /// After the cache call returned.
    pub end_us: u64,
    /// The worker that made it.
    pub process: String,
    /// What it was.
    pub kind: WriteKind,
}

impl WriteRecord {
    fn encode(&self) -> String {
        let kind = match self.kind {
            WriteKind::Set => "set",
            WriteKind::Invalidate => "inv",
            WriteKind::Failed => "err",
        };
        format!("{} {} {} {kind}", self.start_us, self.end_us, self.process)
    }

    fn decode(text: &str) -> Option<WriteRecord> {
        let mut words = text.split(' ');
        let start_us = words.next()?.parse().ok()?;
        let end_us = words.next()?.parse().ok()?;
        let process = words.next()?.to_owned();
        let kind = match words.next()? {
            "set" => WriteKind::Set,
            "inv" => WriteKind::Invalidate,
            _ => WriteKind::Failed,
        };
        Some(WriteRecord {
            start_us,
            end_us,
            process,
            kind,
        })
    }
}

/// One connection to the database.
#[derive(Debug)]
pub struct Truth {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    prefix: String,
}

/// A RESP reply, as far as the workload needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reply {
    Int(i64),
    Bulk(Option<String>),
    Array(Vec<Reply>),
    Status(String),
}

impl Truth {
    /// Connects to the database on 127.0.0.1:`port`; its keys live under `prefix`.
    pub async fn connect(port: u16, prefix: &str) -> std::io::Result<Truth> {
        let stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream.set_nodelay(true)?;
        let (read, writer) = stream.into_split();
        Ok(Truth {
            reader: BufReader::new(read),
            writer,
            prefix: prefix.to_owned(),
        })
    }

    async fn command(&mut self, args: &[&str]) -> std::io::Result<Reply> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            out.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
        }
        self.writer.write_all(&out).await?;
        Box::pin(read_reply(&mut self.reader)).await
    }

    /// Bumps `key`'s version; the new version.
    pub async fn bump(&mut self, key: &str) -> std::io::Result<u64> {
        let name = format!("{}v:{key}", self.prefix);
        match self.command(&["INCR", &name]).await? {
            Reply::Int(n) => Ok(u64::try_from(n).unwrap_or(0)),
            other => Err(unexpected("INCR", &other)),
        }
    }

    /// `key`'s current version (0 before the first bump).
    pub async fn version(&mut self, key: &str) -> std::io::Result<u64> {
        let name = format!("{}v:{key}", self.prefix);
        match self.command(&["GET", &name]).await? {
            Reply::Bulk(None) => Ok(0),
            Reply::Bulk(Some(text)) => text.parse().map_err(|_| unexpected_text("GET", &text)),
            other => Err(unexpected("GET", &other)),
        }
    }

    /// Records the write that made `version` of `key`.
    pub async fn record(
        &mut self,
        key: &str,
        version: u64,
        record: &WriteRecord,
    ) -> std::io::Result<()> {
        let name = format!("{}d:{key}", self.prefix);
        self.command(&["HSET", &name, &version.to_string(), &record.encode()])
            .await
            .map(drop)
    }

    /// Every recorded write of `key`, by version.
    pub async fn records(&mut self, key: &str) -> std::io::Result<BTreeMap<u64, WriteRecord>> {
        let name = format!("{}d:{key}", self.prefix);
        let Reply::Array(items) = self.command(&["HGETALL", &name]).await? else {
            return Err(std::io::Error::other("HGETALL: not an array"));
        };
        let mut records = BTreeMap::new();
        for pair in items.chunks(2) {
            if let [Reply::Bulk(Some(v)), Reply::Bulk(Some(r))] = pair
                && let (Ok(v), Some(r)) = (v.parse(), WriteRecord::decode(r))
            {
                records.insert(v, r);
            }
        }
        Ok(records)
    }

    /// Whether the loader must fail now (the fail-safe row's switch).
    pub async fn failing(&mut self) -> std::io::Result<bool> {
        Ok(self.command(&["GET", FAIL_SWITCH]).await? == Reply::Bulk(Some("1".to_owned())))
    }

    /// Turns the loader's failure on or off for every worker.
    pub async fn set_failing(&mut self, on: bool) -> std::io::Result<()> {
        self.command(&["SET", FAIL_SWITCH, if on { "1" } else { "0" }])
            .await
            .map(drop)
    }

    /// The database's clock, µs since the epoch (`TIME`).
    pub async fn time_us(&mut self) -> std::io::Result<u64> {
        match self.command(&["TIME"]).await? {
            Reply::Array(parts) => match parts.as_slice() {
                [Reply::Bulk(Some(s)), Reply::Bulk(Some(us))] => {
                    let s: u64 = s.parse().map_err(|_| unexpected_text("TIME", s))?;
                    let us: u64 = us.parse().map_err(|_| unexpected_text("TIME", us))?;
                    Ok(s * 1_000_000 + us)
                }
                _ => Err(std::io::Error::other("TIME: not two numbers")),
            },
            other => Err(unexpected("TIME", &other)),
        }
    }
}

fn unexpected(command: &str, reply: &Reply) -> std::io::Error {
    std::io::Error::other(format!("{command} replied {reply:?}"))
}

fn unexpected_text(command: &str, text: &str) -> std::io::Error {
    std::io::Error::other(format!("{command} replied {text:?}"))
}

async fn read_reply(reader: &mut BufReader<OwnedReadHalf>) -> std::io::Result<Reply> {
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    let body = line
        .strip_suffix("\r\n")
        .ok_or_else(|| std::io::Error::other("connection closed mid-reply"))?;
    let (kind, rest) = body.split_at(1.min(body.len()));
    let number = || -> std::io::Result<i64> {
        rest.parse()
            .map_err(|_| std::io::Error::other(format!("bad RESP line {line:?}")))
    };
    match kind {
        ":" => Ok(Reply::Int(number()?)),
        "+" => Ok(Reply::Status(rest.to_owned())),
        "-" => Err(std::io::Error::other(format!("database error: {rest}"))),
        "$" => {
            let Ok(len) = usize::try_from(number()?) else {
                return Ok(Reply::Bulk(None));
            };
            let mut bytes = vec![0; len + 2];
            reader.read_exact(&mut bytes).await?;
            bytes.truncate(len);
            Ok(Reply::Bulk(Some(
                String::from_utf8_lossy(&bytes).into_owned(),
            )))
        }
        "*" => {
            let count = number()?.max(0);
            let mut items = Vec::new();
            for _ in 0..count {
                items.push(Box::pin(read_reply(reader)).await?);
            }
            Ok(Reply::Array(items))
        }
        _ => Err(std::io::Error::other(format!("bad RESP line {line:?}"))),
    }
}
