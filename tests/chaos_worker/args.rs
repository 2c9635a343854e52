//! The worker's command line: `CONFIG.toml` then `--flag value` pairs.

use std::collections::HashMap;
use std::time::Duration;

/// What the worker runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// The steady mixed load over hot and cold keys.
    Mixed,
    /// `--stampede-tasks` concurrent `get_or_set` of one missing key.
    Stampede,
    /// `#[cached]` reads of the hot keys with fail-safe on, while the test makes the loader fail.
    FailSafe,
}

/// The parsed command line.
#[derive(Debug, Clone)]
pub(crate) struct Args {
    pub(crate) config: String,
    pub(crate) process: String,
    pub(crate) out: String,
    pub(crate) db_port: u16,
    pub(crate) db_prefix: String,
    pub(crate) mode: Mode,
    pub(crate) duration: Duration,
    /// Calls per second of the whole process.
    pub(crate) rate: u64,
    pub(crate) tasks: u64,
    pub(crate) hot: usize,
    pub(crate) cold: usize,
    /// Percent of calls on the hot keys.
    pub(crate) hot_share: u64,
    pub(crate) loader_time: Duration,
    /// How far behind another process's write a read may be.
    pub(crate) bound: Duration,
    pub(crate) bucket: Duration,
    /// A call slower than this counts as slow in its bucket.
    pub(crate) slow: Duration,
    /// How often the layer counters are sampled (zero: once, at the end).
    pub(crate) sample_every: Duration,
    pub(crate) seed: u64,
    pub(crate) verify: bool,
    pub(crate) stampede_tasks: usize,
    pub(crate) distributed_lock: bool,
    /// `--after-outage 1`: the stampede waits until the cache has seen its bus go down.
    pub(crate) after_outage: bool,
    pub(crate) fail_safe_max: Duration,
    pub(crate) fail_safe_throttle: Duration,
}

impl Args {
    /// Parses `std::env::args`, or returns what is wrong.
    pub(crate) fn parse() -> Result<Args, String> {
        let mut argv = std::env::args().skip(1);
        let config = argv
            .next()
            .ok_or("usage: chaos_worker CONFIG.toml --flag value ...")?;
        let mut flags = HashMap::new();
        while let Some(flag) = argv.next() {
            let value = argv.next().ok_or(format!("{flag} needs a value"))?;
            flags.insert(flag, value);
        }
        let mut take = |name: &str| flags.remove(name);
        let number = |name: &str, text: Option<String>, default: u64| -> Result<u64, String> {
            text.map_or(Ok(default), |t| {
                t.parse()
                    .map_err(|_| format!("{name} {t:?} is not a number"))
            })
        };
        let ms = |name: &str, text: Option<String>, default: u64| {
            number(name, text, default).map(Duration::from_millis)
        };
        let mode = match take("--mode").as_deref() {
            None | Some("mixed") => Mode::Mixed,
            Some("stampede") => Mode::Stampede,
            Some("fail-safe") => Mode::FailSafe,
            Some(other) => return Err(format!("unknown --mode {other}")),
        };
        let args = Args {
            config,
            process: take("--process").ok_or("missing --process")?,
            out: take("--out").ok_or("missing --out")?,
            db_port: u16::try_from(number("--db", take("--db"), 0)?)
                .map_err(|_| "--db is not a port")?,
            db_prefix: take("--db-prefix").ok_or("missing --db-prefix")?,
            mode,
            duration: ms("--duration-ms", take("--duration-ms"), 20_000)?,
            rate: number("--rate", take("--rate"), 400)?.max(1),
            tasks: number("--tasks", take("--tasks"), 4)?.max(1),
            hot: usize::try_from(number("--hot", take("--hot"), 20)?).unwrap_or(20),
            cold: usize::try_from(number("--cold", take("--cold"), 100)?).unwrap_or(100),
            hot_share: number("--hot-share", take("--hot-share"), 90)?.min(100),
            loader_time: ms("--loader-ms", take("--loader-ms"), 5)?,
            bound: ms("--bound-ms", take("--bound-ms"), 5)?,
            bucket: ms("--bucket-ms", take("--bucket-ms"), 250)?.max(Duration::from_millis(10)),
            slow: ms("--slow-ms", take("--slow-ms"), 100)?,
            sample_every: ms("--sample-ms", take("--sample-ms"), 0)?,
            seed: number("--seed", take("--seed"), 1)?,
            verify: number("--verify", take("--verify"), 0)? == 1,
            stampede_tasks: usize::try_from(number(
                "--stampede-tasks",
                take("--stampede-tasks"),
                10_000,
            )?)
            .unwrap_or(10_000),
            distributed_lock: number("--distributed-lock", take("--distributed-lock"), 0)? == 1,
            after_outage: number("--after-outage", take("--after-outage"), 0)? == 1,
            fail_safe_max: ms("--fail-safe-ms", take("--fail-safe-ms"), 60_000)?,
            fail_safe_throttle: ms("--throttle-ms", take("--throttle-ms"), 1_000)?,
        };
        if let Some(unknown) = flags.keys().next() {
            return Err(format!("unknown flag {unknown}"));
        }
        if args.db_port == 0 {
            return Err("missing --db".to_owned());
        }
        Ok(args)
    }

    /// The name of key `i`: the hot keys first, then the cold ones.
    pub(crate) fn key(&self, i: usize) -> String {
        if i < self.hot {
            format!("h{i}")
        } else {
            format!("c{}", i - self.hot)
        }
    }

    /// The tag of key `i`: hot keys carry one of four tags, cold keys none.
    pub(crate) fn tag(&self, i: usize) -> Option<String> {
        (i < self.hot).then(|| format!("t{}", i % 4))
    }

    /// How many keys there are.
    pub(crate) fn keys(&self) -> usize {
        self.hot + self.cold
    }
}
