//! Run settings: every limit highwater obeys, in one struct.
//!
//! Each limit is named with its unit last (`memory_bytes_max`), is documented
//! here, and has an error that names it when it is hit. Defaults are derived
//! from the machine: the memory limit from the cgroup (v2, then v1) or from
//! physical RAM, the thread count from the CPUs this process may use.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// The settings of one run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The ceiling on the whole process's resident set size, in bytes. Not
    /// only what operators count: the binary, stacks and allocator slack too.
    pub memory_bytes_max: u64,
    /// Worker threads; at least 1.
    pub threads: usize,
    /// Rows in one batch flowing between operators.
    pub batch_rows: usize,
    /// Where the per-run spill directory is created.
    pub temp_dir: PathBuf,
    /// The most spill runs one merge pass may read at once.
    pub merge_fan_in_max: usize,
    /// The most bytes the run may write to its spill directory.
    pub spill_bytes_max: u64,
    /// ZSTD level for Parquet output.
    pub zstd_level: i32,
    /// Rows read to infer the schema of a CSV or NDJSON file.
    pub infer_rows_max: usize,
}

impl RunConfig {
    /// Settings derived from this machine.
    pub fn detect() -> Self {
        RunConfig {
            memory_bytes_max: default_memory_bytes_max(),
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            batch_rows: 8192,
            temp_dir: std::env::temp_dir(),
            merge_fan_in_max: 64,
            spill_bytes_max: u64::MAX,
            zstd_level: 1,
            infer_rows_max: 20_480,
        }
    }

    /// The same settings with a given memory limit: a convenience for tests.
    pub fn with_memory_bytes_max(mut self, bytes: u64) -> Self {
        self.memory_bytes_max = bytes;
        self
    }
}

/// The memory this process may use when no limit is given: 80% of the
/// smaller of the cgroup's limit and physical RAM, so that the kernel, page
/// cache and neighbours keep some room.
pub fn default_memory_bytes_max() -> u64 {
    available_memory_bytes() / 10 * 8
}

/// The smaller of the cgroup memory limit (v2 `memory.max`, v1
/// `memory.limit_in_bytes`) and physical RAM.
pub fn available_memory_bytes() -> u64 {
    let physical = physical_memory_bytes().unwrap_or(4 << 30);
    match cgroup_memory_bytes() {
        Some(cgroup) => cgroup.min(physical),
        None => physical,
    }
}

fn physical_memory_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn cgroup_memory_bytes() -> Option<u64> {
    // cgroup v2: the process's own group, found through /proc/self/cgroup.
    let own = std::fs::read_to_string("/proc/self/cgroup").ok();
    let mut candidates = Vec::new();
    if let Some(own) = &own {
        for line in own.lines() {
            if let Some(path) = line.strip_prefix("0::") {
                candidates.push(format!("/sys/fs/cgroup{}/memory.max", path.trim_end()));
            }
        }
    }
    candidates.push("/sys/fs/cgroup/memory.max".to_string());
    candidates.push("/sys/fs/cgroup/memory/memory.limit_in_bytes".to_string());
    for path in candidates {
        if let Ok(text) = std::fs::read_to_string(&path) {
            let text = text.trim();
            if text == "max" {
                continue;
            }
            // cgroup v1 reports "no limit" as a huge number near i64::MAX.
            if let Ok(bytes) = text.parse::<u64>() {
                if bytes < (1u64 << 60) {
                    return Some(bytes);
                }
            }
        }
    }
    None
}

/// Parse a byte size: `512MB`, `2GiB`, `1.5GB`, `65536`, or a percentage of
/// the available memory such as `50%`. Decimal units (KB, MB, GB, TB) are
/// powers of 1000 and binary units (KiB, MiB, GiB, TiB) powers of 1024, as in
/// DuckDB.
pub fn parse_byte_size(text: &str) -> Result<u64> {
    let bad = || {
        Error::plan(format!(
            "cannot read '{text}' as a size: write e.g. 512MB, 2GiB or 50%"
        ))
    };
    let t = text.trim();
    if let Some(percent) = t.strip_suffix('%') {
        let p: f64 = percent.trim().parse().map_err(|_| bad())?;
        if !(p > 0.0 && p <= 100.0) {
            return Err(bad());
        }
        return Ok((available_memory_bytes() as f64 * p / 100.0) as u64);
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number.parse().map_err(|_| bad())?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1000,
        "mb" | "m" => 1000 * 1000,
        "gb" | "g" => 1000 * 1000 * 1000,
        "tb" | "t" => 1000u64.pow(4),
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    let bytes = number * multiplier as f64;
    if !(bytes >= 1.0 && bytes < u64::MAX as f64) {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// Render a byte count for people: `61.2 MB`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_decimal_and_binary_units() {
        assert_eq!(parse_byte_size("512MB").unwrap(), 512_000_000);
        assert_eq!(parse_byte_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_byte_size("64 mib").unwrap(), 64 << 20);
        assert_eq!(parse_byte_size("1.5GB").unwrap(), 1_500_000_000);
        assert_eq!(parse_byte_size("4096").unwrap(), 4096);
        let half = parse_byte_size("50%").unwrap();
        assert!(half > 0 && half <= available_memory_bytes());
    }

    #[test]
    fn bad_sizes_are_refused() {
        for bad in ["", "MB", "12XB", "-5MB", "0", "150%", "0%", "abc"] {
            assert!(parse_byte_size(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn detected_memory_is_plausible() {
        let bytes = available_memory_bytes();
        assert!(bytes > 16 << 20, "{bytes}");
        assert!(default_memory_bytes_max() < bytes);
    }

    #[test]
    fn byte_counts_render_with_units() {
        assert_eq!(format_bytes(999), "999 B");
        assert_eq!(format_bytes(61_234_567), "61.2 MB");
    }
}
