//! Measures the memory that parsing one large task answer costs: the peak resident memory while
//! it is read, and what stays resident once the answer and the parsed record are dropped.
//!
//! ```text
//! cargo run --release --example parse_memory -- [show|list] [entries] [bytes per entry]
//! ```
//!
//! `show` (the default): a `ShowHotkeyTaskDetails` answer with 100,000 keys of about 200 bytes
//! each (20 MB, under the client's 32 MiB cap). `list`: a `ListHotKeyScanTasks` answer with
//! that many records. The allocator is tuned as `dcs-key-exporter` tunes it
//! (`M_ARENA_MAX` 1, `M_MMAP_THRESHOLD` 64 KiB). Linux only (`/proc/self/status`). The numbers
//! are in BENCHMARKS.md.

use std::process::ExitCode;

use dcs_key_exporter::dcs::{TaskList, TaskRecord};

/// `VmRSS` and `VmHWM` of this process, in bytes.
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Resets `VmHWM` to the current resident size.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_malloc() {
    // SAFETY: sets allocator parameters before any other thread exists, as the binary does.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 * 1024);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_malloc() {}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn main() -> ExitCode {
    tune_malloc();
    let mut args = std::env::args().skip(1).peekable();
    let list = match args.peek().map(String::as_str) {
        Some("list") => {
            args.next();
            true
        }
        Some("show") => {
            args.next();
            false
        }
        _ => false,
    };
    let keys: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let per_key: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);

    if list {
        return list_answer(keys, per_key);
    }
    let mut body = String::with_capacity(keys * (per_key + 8) + 256);
    body.push_str(
        r#"{"id":"t-1","instance_id":"i","status":"success","scan_type":"manual",
        "created_at":"2024-06-10T06:13:20.000Z","finished_at":"2024-06-10T06:15:00.000Z","keys":["#,
    );
    for i in 0..keys {
        if i > 0 {
            body.push(',');
        }
        let head = format!(
            r#"{{"type":"hash","shard":"192.168.0.{}:6379","db":0,"size":{},"unit":"count","freq":{},"name":"key:{i}:"#,
            i % 200,
            (i * 7919) % 1_000_000,
            i % 256
        );
        body.push_str(&head);
        let pad = per_key.saturating_sub(head.len() + 2);
        body.extend(std::iter::repeat_n('x', pad));
        body.push_str(r#""}"#);
    }
    body.push_str("]}");
    let body = body.into_bytes();

    let (before, _) = memory();
    reset_peak();
    let task: TaskRecord = match serde_json::from_slice(&body) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("parse failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (_, peak) = memory();
    let kept = task.keys.as_ref().map_or(0, Vec::len);
    let count = task.key_count();
    drop(body);
    drop(task);
    let (after, _) = memory();
    println!(
        "answer {:.1} MB, {keys} keys ({count} counted, {kept} kept): \
         resident before {:.0} MiB, peak while parsing {:.0} MiB (+{:.0} MiB), \
         after dropping answer and record {:.0} MiB",
        (keys * per_key) as f64 / 1e6,
        mib(before),
        mib(peak),
        mib(peak.saturating_sub(before)),
        mib(after)
    );
    ExitCode::SUCCESS
}

fn list_answer(records: usize, per_record: usize) -> ExitCode {
    let mut body = String::with_capacity(records * (per_record + 8) + 256);
    body.push_str(r#"{"instance_id":"i","count":100,"records":["#);
    for i in 0..records {
        if i > 0 {
            body.push(',');
        }
        let head = format!(
            r#"{{"status":"success","scan_type":"auto","created_at":"2024-06-10T06:13:20.000Z","started_at":"2024-06-10T06:13:21.000Z","finished_at":"2024-06-10T06:15:00.000Z","id":"{i}-"#
        );
        body.push_str(&head);
        let pad = per_record.saturating_sub(head.len() + 2);
        body.extend(std::iter::repeat_n('x', pad));
        body.push_str(r#""}"#);
    }
    body.push_str("]}");
    let body = body.into_bytes();
    let (before, _) = memory();
    reset_peak();
    let parsed: TaskList = match serde_json::from_slice(&body) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("parse failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (_, peak) = memory();
    let kept = parsed.records.len();
    drop(body);
    drop(parsed);
    let (after, _) = memory();
    println!(
        "list answer {:.1} MB, {records} records ({kept} kept): resident before {:.0} MiB, \
         peak while parsing {:.0} MiB (+{:.0} MiB), after dropping answer and list {:.0} MiB",
        (records * per_record) as f64 / 1e6,
        mib(before),
        mib(peak),
        mib(peak.saturating_sub(before)),
        mib(after)
    );
    ExitCode::SUCCESS
}
