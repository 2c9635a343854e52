//! The values of `simulate`'s options: L1 sizes (entries or a share of the trace's unique
//! keys), TTLs and per-layer latencies (`docs/simulate.md#options`).

use std::fmt;
use std::str::FromStr;

/// An L1 size as given: a number of entries, or a percentage of the trace's unique keys.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum SizeSpec {
    /// This many entries.
    Entries(usize),
    /// This share (in %) of the trace's unique keys, at least one entry.
    Percent(f64),
}

impl SizeSpec {
    /// Entries, for a trace of `unique` unique keys.
    pub(crate) fn resolve(self, unique: usize) -> usize {
        match self {
            SizeSpec::Entries(n) => n,
            SizeSpec::Percent(p) => ((unique as f64 * p / 100.0).round() as usize).max(1),
        }
    }
}

impl FromStr for SizeSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<SizeSpec, String> {
        let text = text.trim();
        if let Some(percent) = text.strip_suffix('%') {
            match percent.trim().parse::<f64>() {
                Ok(p) if p > 0.0 && p <= 100.0 => Ok(SizeSpec::Percent(p)),
                _ => Err(format!(
                    "size `{text}`: a percentage is a number in (0, 100] followed by %"
                )),
            }
        } else {
            match text.replace('_', "").parse::<usize>() {
                Ok(n) if n > 0 => Ok(SizeSpec::Entries(n)),
                _ => Err(format!(
                    "size `{text}`: a size is a number of entries > 0, or a percentage like 1%"
                )),
            }
        }
    }
}

impl fmt::Display for SizeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizeSpec::Entries(n) => write!(f, "{n}"),
            SizeSpec::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// A TTL: a duration in seconds, or none (entries never expire).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Ttl(pub(crate) Option<f64>);

impl FromStr for Ttl {
    type Err = String;

    fn from_str(text: &str) -> Result<Ttl, String> {
        let text = text.trim();
        if text == "none" {
            return Ok(Ttl(None));
        }
        match seconds(text, "s") {
            Some(s) if s > 0.0 => Ok(Ttl(Some(s))),
            _ => Err(format!(
                "TTL `{text}`: a duration > 0 like 500ms, 60s, 5m, 1h, 1d (or `none`)"
            )),
        }
    }
}

impl fmt::Display for Ttl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("none"),
            Some(s) => f.write_str(&duration_text(s)),
        }
    }
}

/// A duration as short text: `60s`, `5m`, `250us`.
pub(crate) fn duration_text(seconds: f64) -> String {
    let units = [
        (86_400.0, "d"),
        (3_600.0, "h"),
        (60.0, "m"),
        (1.0, "s"),
        (1e-3, "ms"),
        (1e-6, "us"),
        (1e-9, "ns"),
    ];
    for (scale, unit) in units {
        let value = seconds / scale;
        if value >= 1.0 && (value - value.round()).abs() < 1e-9 {
            return format!("{}{unit}", value.round());
        }
    }
    format!("{seconds}s")
}

/// `text` (a number and a unit among ns, us, µs, ms, s, m, h, d) in seconds; a bare number is in
/// `bare_unit`.
fn seconds(text: &str, bare_unit: &str) -> Option<f64> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match if unit.is_empty() { bare_unit } else { unit } {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3_600.0,
        "d" => 86_400.0,
        _ => return None,
    };
    Some(number * scale).filter(|s| s.is_finite())
}

/// What a request costs at each layer, in seconds (`--latency`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Latencies {
    /// An L1 read (in process).
    pub(crate) l1: f64,
    /// An L2 round trip (Redis on the same network).
    pub(crate) l2: f64,
    /// An L3 round trip.
    pub(crate) l3: f64,
    /// A load from the origin (the database or service the cache fronts).
    pub(crate) origin: f64,
}

impl Default for Latencies {
    fn default() -> Latencies {
        Latencies {
            l1: 100e-9,
            l2: 250e-6,
            l3: 600e-6,
            origin: 20e-3,
        }
    }
}

impl FromStr for Latencies {
    type Err = String;

    /// `l1=100ns,l2=250us,l3=600us,origin=20ms`, any subset; the rest keep their defaults.
    fn from_str(text: &str) -> Result<Latencies, String> {
        let mut latencies = Latencies::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let bad = || {
                format!(
                    "latency `{part}`: write LAYER=DURATION, LAYER one of l1, l2, l3, origin, like l2=250us"
                )
            };
            let (layer, value) = part.split_once('=').ok_or_else(bad)?;
            let value = seconds(value.trim(), "s")
                .filter(|s| *s >= 0.0)
                .ok_or_else(bad)?;
            match layer.trim() {
                "l1" => latencies.l1 = value,
                "l2" => latencies.l2 = value,
                "l3" => latencies.l3 = value,
                "origin" => latencies.origin = value,
                _ => return Err(bad()),
            }
        }
        Ok(latencies)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_entries_or_a_share_of_unique_keys() {
        assert_eq!("2000".parse(), Ok(SizeSpec::Entries(2000)));
        assert_eq!("0.1%".parse(), Ok(SizeSpec::Percent(0.1)));
        assert_eq!(SizeSpec::Percent(0.1).resolve(186_880), 187);
        assert_eq!(SizeSpec::Percent(0.001).resolve(10), 1);
        assert!("0".parse::<SizeSpec>().is_err());
        assert!("abc%".parse::<SizeSpec>().is_err());
        assert!("200%".parse::<SizeSpec>().is_err());
    }

    #[test]
    fn ttls_and_latencies_read_their_units() {
        assert_eq!("60s".parse(), Ok(Ttl(Some(60.0))));
        assert_eq!("5m".parse(), Ok(Ttl(Some(300.0))));
        assert_eq!("none".parse(), Ok(Ttl(None)));
        assert!("5x".parse::<Ttl>().is_err());
        assert_eq!(Ttl(Some(300.0)).to_string(), "5m");
        let latencies: Result<Latencies, _> = "l2=1ms, origin=2s".parse();
        assert_eq!(
            latencies,
            Ok(Latencies {
                l2: 1e-3,
                origin: 2.0,
                ..Latencies::default()
            })
        );
        assert!("l9=1ms".parse::<Latencies>().is_err());
    }
}
