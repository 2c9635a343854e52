//! Trace readers: the ARC `.lis` format, one key per line, and CSV `timestamp,key,size`, each
//! plain or zstd-compressed (`docs/simulate.md#input-formats`).
//!
//! A trace is streamed once, line by line, into the key sequence the replays share (8 bytes a
//! request, plus 8 for a timestamp when the format has one): Belady needs the whole sequence to
//! know each key's next use, and every replay walks the same one.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use indicatif::ProgressBar;
use xxhash_rust::xxh3::xxh3_64;

use super::error::SimulateError;

/// The first bytes of a zstd frame.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// The most pages one ARC line may stand for: a guard against a corrupt count asking for
/// terabytes, far above any real request (OLTP's largest is a few dozen).
const ARC_MAX_PAGES_PER_LINE: u64 = 1 << 24;

/// How a trace file is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum TraceFormat {
    /// ARC `.lis`: `start count ignored request_number`, standing for `count` page requests.
    Arc,
    /// One key per line, any bytes; blank lines skipped.
    Keys,
    /// `timestamp,key,size`: seconds (float allowed), the key, its size (read, not used).
    Csv,
}

impl TraceFormat {
    /// The format a file's name says: `.lis` is ARC, `.csv` is CSV, anything else one key per
    /// line; a `.zst` suffix is looked through.
    pub(crate) fn from_path(path: &Path) -> TraceFormat {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        let name = name
            .strip_suffix(".zst")
            .or_else(|| name.strip_suffix(".zstd"))
            .unwrap_or(&name);
        if name.ends_with(".lis") {
            TraceFormat::Arc
        } else if name.ends_with(".csv") {
            TraceFormat::Csv
        } else {
            TraceFormat::Keys
        }
    }
}

/// A trace in memory: the key of each request, in order, and its time when the trace has one.
#[derive(Debug, Default)]
pub(crate) struct Trace {
    /// The key of each request.
    pub(crate) keys: Vec<u64>,
    /// Seconds, one per request (CSV traces only).
    pub(crate) times: Option<Vec<f64>>,
}

/// Reads `path` in `format`, decompressing zstd when the file starts with zstd's magic number.
pub(crate) fn read(
    path: &Path,
    format: TraceFormat,
    progress: &ProgressBar,
) -> Result<Trace, SimulateError> {
    let io_error = |line, source| SimulateError::Io {
        path: path.to_path_buf(),
        line,
        source,
    };
    let file = File::open(path).map_err(|e| io_error(None, e))?;
    let mut raw = BufReader::with_capacity(1 << 16, file);
    let compressed = raw
        .fill_buf()
        .map_err(|e| io_error(None, e))?
        .starts_with(&ZSTD_MAGIC);
    let input: Box<dyn Read> = if compressed {
        Box::new(zstd::Decoder::with_buffer(raw).map_err(|e| io_error(None, e))?)
    } else {
        Box::new(raw)
    };
    let input = BufReader::with_capacity(1 << 16, input);
    let mut reader = Reader {
        path: path.to_path_buf(),
        trace: Trace::default(),
        progress,
    };
    match format {
        TraceFormat::Arc => reader.arc(input)?,
        TraceFormat::Keys => reader.keys(input)?,
        TraceFormat::Csv => reader.csv(input)?,
    }
    if reader.trace.keys.is_empty() {
        return Err(SimulateError::Empty(path.to_path_buf()));
    }
    Ok(reader.trace)
}

/// One pass over one file.
struct Reader<'a> {
    path: PathBuf,
    trace: Trace,
    progress: &'a ProgressBar,
}

impl Reader<'_> {
    fn parse_error(&self, line: u64, reason: impl Into<String>) -> SimulateError {
        SimulateError::Parse {
            path: self.path.clone(),
            line,
            reason: reason.into(),
        }
    }

    fn tick(&self, line: u64) {
        if line.is_multiple_of(65_536) {
            self.progress.set_position(self.trace.keys.len() as u64);
        }
    }

    /// Calls `each` with every line (without its end) and its number, counted from 1.
    fn lines(
        &mut self,
        mut input: impl BufRead,
        mut each: impl FnMut(&mut Self, u64, &[u8]) -> Result<(), SimulateError>,
    ) -> Result<(), SimulateError> {
        let mut buffer = Vec::with_capacity(256);
        let mut number = 0u64;
        loop {
            buffer.clear();
            number += 1;
            let read =
                input
                    .read_until(b'\n', &mut buffer)
                    .map_err(|source| SimulateError::Io {
                        path: self.path.clone(),
                        line: Some(number),
                        source,
                    })?;
            if read == 0 {
                return Ok(());
            }
            let mut line = buffer.as_slice();
            while let [rest @ .., b'\n' | b'\r'] = line {
                line = rest;
            }
            each(self, number, line)?;
            self.tick(number);
        }
    }

    fn arc(&mut self, input: impl BufRead) -> Result<(), SimulateError> {
        self.lines(input, |reader, number, line| {
            let text = std::str::from_utf8(line)
                .map_err(|_| reader.parse_error(number, "an ARC line is ASCII digits"))?;
            if text.trim().is_empty() {
                return Ok(());
            }
            let fields: Vec<&str> = text.split_ascii_whitespace().collect();
            if fields.len() != 4 {
                return Err(reader.parse_error(
                    number,
                    format!(
                        "an ARC line has 4 fields (start count ignored request_number), this one {}",
                        fields.len()
                    ),
                ));
            }
            let mut numbers = [0u64; 4];
            for (slot, field) in numbers.iter_mut().zip(&fields) {
                *slot = field.parse().map_err(|_| {
                    reader.parse_error(number, format!("`{field}` is not a whole number"))
                })?;
            }
            let [start, count, ..] = numbers;
            if count > ARC_MAX_PAGES_PER_LINE {
                return Err(reader.parse_error(
                    number,
                    format!("{count} pages in one request (at most {ARC_MAX_PAGES_PER_LINE})"),
                ));
            }
            let end = start
                .checked_add(count)
                .ok_or_else(|| reader.parse_error(number, "start + count overflows 64 bits"))?;
            reader.trace.keys.extend(start..end);
            Ok(())
        })
    }

    fn keys(&mut self, input: impl BufRead) -> Result<(), SimulateError> {
        self.lines(input, |reader, _, line| {
            if !line.is_empty() {
                reader.trace.keys.push(xxh3_64(line));
            }
            Ok(())
        })
    }

    fn csv(&mut self, input: impl Read) -> Result<(), SimulateError> {
        let mut csv = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(input);
        let mut times = Vec::new();
        let mut record = csv::ByteRecord::new();
        loop {
            let more = csv.read_byte_record(&mut record).map_err(|e| {
                let line = e.position().map(|p| p.line());
                let message = e.to_string();
                match e.into_kind() {
                    csv::ErrorKind::Io(source) => SimulateError::Io {
                        path: self.path.clone(),
                        line,
                        source,
                    },
                    _ => self.parse_error(line.unwrap_or(0), message),
                }
            })?;
            if !more {
                break;
            }
            let number = record.position().map_or(0, |p| p.line());
            if record.len() == 1 && record[0].is_empty() {
                continue;
            }
            if record.len() != 3 {
                return Err(self.parse_error(
                    number,
                    format!(
                        "a CSV line has 3 fields (timestamp,key,size), this one {}",
                        record.len()
                    ),
                ));
            }
            let timestamp = std::str::from_utf8(&record[0])
                .ok()
                .and_then(|t| t.parse::<f64>().ok())
                .filter(|t| t.is_finite());
            let Some(timestamp) = timestamp else {
                // The first line may be a header.
                if times.is_empty() && record[0].eq_ignore_ascii_case(b"timestamp") {
                    continue;
                }
                return Err(self.parse_error(
                    number,
                    format!(
                        "`{}` is not a timestamp in seconds",
                        String::from_utf8_lossy(&record[0])
                    ),
                ));
            };
            let size_ok = std::str::from_utf8(&record[2])
                .ok()
                .is_some_and(|s| s.parse::<u64>().is_ok());
            if !size_ok {
                return Err(self.parse_error(
                    number,
                    format!(
                        "`{}` is not a size in bytes",
                        String::from_utf8_lossy(&record[2])
                    ),
                ));
            }
            times.push(timestamp);
            self.trace.keys.push(xxh3_64(&record[1]));
            self.tick(number);
        }
        self.trace.times = Some(times);
        Ok(())
    }
}
