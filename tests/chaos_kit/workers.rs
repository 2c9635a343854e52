//! `chaos_worker` processes as a test drives them: started together from one configuration, told
//! to go at once, waited for, and their reports read.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use super::Report;

/// How to start one worker.
#[derive(Debug, Clone, Default)]
pub struct WorkerSpec {
    /// Flags after the configuration file (`--duration-ms 20000`, ...).
    pub args: Vec<String>,
    /// Run it under `faketime -f +Ns` with its clock this many seconds ahead.
    pub clock_ahead_s: Option<u32>,
}

/// Running workers, killed on drop.
#[derive(Debug)]
pub struct WorkerSet {
    workers: Vec<(Child, BufReader<ChildStdout>)>,
    outs: Vec<PathBuf>,
    _dir: tempfile::TempDir,
}

impl WorkerSet {
    /// Writes `config_toml` to a file, starts one `binary` per spec (named `p0`, `p1`, ... and
    /// given `--process`, `--out` and the config), and waits until each has built its cache.
    pub fn start(binary: &Path, config_toml: &str, specs: &[WorkerSpec]) -> WorkerSet {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let config = dir.path().join("cache.toml");
        std::fs::write(&config, config_toml).unwrap_or_else(|e| panic!("write config: {e}"));
        let mut workers = Vec::new();
        let mut outs = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            let out = dir.path().join(format!("p{i}.json"));
            let mut command = match spec.clock_ahead_s {
                Some(s) => {
                    let mut c = Command::new("faketime");
                    // Only the wall clock moves: the envelope's times come from it; the monotonic
                    // clock of timers and L1 deadlines stays true.
                    c.env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
                        .arg("-f")
                        .arg(format!("+{s}s"))
                        .arg(binary);
                    c
                }
                None => Command::new(binary),
            };
            command
                .arg(&config)
                .args(["--process", &format!("p{i}")])
                .arg("--out")
                .arg(&out)
                .args(&spec.args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit());
            let mut child = command
                .spawn()
                .unwrap_or_else(|e| panic!("start worker p{i}: {e}"));
            let stdout = child
                .stdout
                .take()
                .unwrap_or_else(|| panic!("worker p{i} has no stdout"));
            workers.push((child, BufReader::new(stdout)));
            outs.push(out);
        }
        for (i, (_, stdout)) in workers.iter_mut().enumerate() {
            let mut line = String::new();
            let _ = stdout.read_line(&mut line);
            assert_eq!(line.trim(), "ready", "worker p{i} did not build its cache");
        }
        WorkerSet {
            workers,
            outs,
            _dir: dir,
        }
    }

    /// Tells every worker to begin; the moment, ms since the epoch (this process's clock).
    pub fn go(&mut self) -> u64 {
        let at = super::now_us() / 1000;
        for (i, (child, _)) in self.workers.iter_mut().enumerate() {
            let stdin = child
                .stdin
                .as_mut()
                .unwrap_or_else(|| panic!("worker p{i} has no stdin"));
            writeln!(stdin, "go")
                .and_then(|()| stdin.flush())
                .unwrap_or_else(|e| panic!("tell worker p{i} to go: {e}"));
        }
        at
    }

    /// Waits until every worker has exited (successfully, within `within`) and returns their
    /// reports, in worker order.
    pub fn finish(mut self, within: Duration) -> Vec<Report> {
        let deadline = Instant::now() + within;
        for (i, (child, _)) in self.workers.iter_mut().enumerate() {
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        assert!(status.success(), "worker p{i} failed: {status}");
                        break;
                    }
                    Ok(None) => {}
                    Err(e) => panic!("wait for worker p{i}: {e}"),
                }
                assert!(Instant::now() < deadline, "worker p{i} ran past {within:?}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.outs
            .iter()
            .map(|out| {
                let text = std::fs::read_to_string(out)
                    .unwrap_or_else(|e| panic!("read {}: {e}", out.display()));
                serde_json::from_str(text.trim())
                    .unwrap_or_else(|e| panic!("{}: not a report: {e}", out.display()))
            })
            .collect()
    }
}

impl Drop for WorkerSet {
    fn drop(&mut self) {
        for (child, _) in &mut self.workers {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
