//! The run report (stderr, at the end) and the progress bar (stderr, on a
//! terminal).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::config::format_bytes;
use crate::exec::{Progress, RunContext};

#[derive(Debug, Clone)]
pub struct RunReport {
    pub rows_read: u64,
    pub rows_written: u64,
    pub wall_seconds: f64,
    pub rss_bytes_peak: u64,
    /// The most live heap, when the counting allocator is installed.
    pub heap_bytes_peak: Option<u64>,
    pub reserved_bytes_peak: u64,
    pub memory_bytes_max: u64,
    pub spill_bytes: u64,
    pub spill_files: u64,
    pub files_written: Vec<PathBuf>,
}

impl RunReport {
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "rows_read": self.rows_read,
            "rows_written": self.rows_written,
            "wall_seconds": (self.wall_seconds * 1000.0).round() / 1000.0,
            "rss_bytes_peak": self.rss_bytes_peak,
            "heap_bytes_peak": self.heap_bytes_peak,
            "reserved_bytes_peak": self.reserved_bytes_peak,
            "memory_bytes_max": self.memory_bytes_max,
            "spill_bytes": self.spill_bytes,
            "spill_files": self.spill_files,
            "files_written": self.files_written.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        })
        .to_string()
    }

    pub fn to_text(&self) -> String {
        let mut lines = vec![
            format!(
                "rows        {} read, {} written",
                thousands(self.rows_read),
                thousands(self.rows_written)
            ),
            format!("wall time   {:.2} s", self.wall_seconds),
            format!(
                "memory      peak RSS {} (limit {}), peak reserved {}{}",
                format_bytes(self.rss_bytes_peak),
                if self.memory_bytes_max == u64::MAX {
                    "none".to_string()
                } else {
                    format_bytes(self.memory_bytes_max)
                },
                format_bytes(self.reserved_bytes_peak),
                self.heap_bytes_peak
                    .map(|h| format!(", peak heap {}", format_bytes(h)))
                    .unwrap_or_default()
            ),
            format!(
                "spilled     {} in {} file{}",
                format_bytes(self.spill_bytes),
                self.spill_files,
                if self.spill_files == 1 { "" } else { "s" }
            ),
        ];
        if !self.files_written.is_empty() {
            let names: Vec<String> = self
                .files_written
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            lines.push(format!("written     {}", names.join(", ")));
        }
        lines.join("\n")
    }
}

/// 6001215 → "6,001,215".
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A progress bar driven by the run's counters, redrawn a few times a second
/// by its own thread; dropping it clears it.
pub struct ProgressBar {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl ProgressBar {
    pub fn start(ctx: Arc<RunContext>) -> ProgressBar {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("highwater-progress".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                let total = Progress::get(&ctx.progress.bytes_total);
                let bar = indicatif::ProgressBar::with_draw_target(
                    Some(total.max(1)),
                    indicatif::ProgressDrawTarget::stderr_with_hz(4),
                );
                let style = indicatif::ProgressStyle::with_template(
                    "{bar:30} {bytes}/{total_bytes} {msg} eta {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
                bar.set_style(style);
                while !flag.load(Ordering::Relaxed) {
                    bar.set_position(Progress::get(&ctx.progress.bytes_read).min(total));
                    bar.set_message(format!(
                        "{} rows",
                        thousands(Progress::get(&ctx.progress.rows_read))
                    ));
                    std::thread::sleep(Duration::from_millis(250));
                }
                bar.finish_and_clear();
            })
            .ok();
        ProgressBar { stop, handle }
    }
}

impl Drop for ProgressBar {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(6001215), "6,001,215");
    }
}
