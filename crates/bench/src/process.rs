//! What Linux reports about a running process in /proc: memory (VmRSS, VmHWM), CPU time used,
//! context switches, and child processes.

use std::time::Duration;

#[cfg(test)]
mod tests;

/// Clock ticks per second in /proc/PID/stat. Linux fixes USER_HZ at 100 on every architecture
/// this runs on, and reading it with sysconf would need `unsafe`.
const TICKS_PER_SEC: u64 = 100;

/// A `kB` field of /proc/PID/status (`VmRSS` now, `VmHWM` peak), in KiB.
pub(crate) fn memory_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status_field_kib(&status, field)
}

pub(crate) fn status_field_kib(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

/// User plus system CPU time of a process, all its threads (live and exited) together.
pub(crate) fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat_cpu_time(&stat)
}

/// Our own CPU time (the benchmark client).
pub(crate) fn own_cpu_time() -> Option<Duration> {
    cpu_time(std::process::id())
}

pub(crate) fn stat_cpu_time(stat: &str) -> Option<Duration> {
    // The command name (field 2) is in parentheses and may hold spaces; count from after it.
    // Then field 3 (state) is index 0, utime (field 14) index 11, stime (field 15) index 12.
    let (_, after_name) = stat.rsplit_once(')')?;
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis(
        (user + system) * 1000 / TICKS_PER_SEC,
    ))
}

/// Context switches, voluntary and not, of a process's live threads summed. A thread that
/// exited is no longer counted: compare readings of a process whose threads live on (tokio's
/// workers and Portcullis's evidence writer do; blocking-pool threads idle 10 s first).
pub(crate) fn context_switches(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0;
    for task in tasks.flatten() {
        // A thread that ends while this reads is skipped.
        if let Ok(status) = std::fs::read_to_string(task.path().join("status")) {
            total += status_switches(&status)?;
        }
    }
    Some(total)
}

/// `voluntary_ctxt_switches` plus `nonvoluntary_ctxt_switches` of one /proc status text.
pub(crate) fn status_switches(status: &str) -> Option<u64> {
    let field = |name: &str| -> Option<u64> {
        status.lines().find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(':')?
                .trim()
                .parse()
                .ok()
        })
    };
    Some(field("voluntary_ctxt_switches")? + field("nonvoluntary_ctxt_switches")?)
}

/// The direct children of a process (the union of each thread's children).
pub(crate) fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            found.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    found.sort_unstable();
    found.dedup();
    found
}

/// The 1, 5 and 15 minute load averages of the machine, as /proc/loadavg writes them.
pub(crate) fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let fields: Vec<&str> = text.split_whitespace().take(3).collect();
    (fields.len() == 3).then(|| fields.join(" "))
}
