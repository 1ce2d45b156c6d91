//! Parsing /proc text captured by hand.

use std::time::Duration;

use super::{stat_cpu_time, status_field_kib, status_switches};

#[test]
fn reads_memory_fields_in_kib() {
    let status = "Name:\tportcullis\nVmHWM:\t   12544 kB\nVmRSS:\t   11264 kB\nVmRSSx:\t1 kB\n";
    assert_eq!(status_field_kib(status, "VmRSS"), Some(11264));
    assert_eq!(status_field_kib(status, "VmHWM"), Some(12544));
    assert_eq!(status_field_kib(status, "VmSwap"), None);
}

#[test]
fn reads_cpu_time_after_a_name_with_spaces_and_parentheses() {
    let stat = "4242 (tokio (rt) worker) S 1 4242 4242 0 -1 4194560 900 0 0 0 150 25 0 0 20 0 4 0";
    assert_eq!(stat_cpu_time(stat), Some(Duration::from_millis(1750)));
}

#[test]
fn truncated_stat_is_none() {
    assert_eq!(stat_cpu_time("4242 (x) S 1 2 3"), None);
}

#[test]
fn reads_both_kinds_of_context_switches() {
    let status =
        "Name:\tportcullis\nvoluntary_ctxt_switches:\t120\nnonvoluntary_ctxt_switches:\t7\n";
    assert_eq!(status_switches(status), Some(127));
    assert_eq!(status_switches("voluntary_ctxt_switches:\t120\n"), None);
}
