//! What a stdio upstream writes on stderr: each line logged at debug level, and the last few
//! kept, so that an upstream that dies before it serves is explained at the default level and
//! in the tool error: what it said last, and which accesses it reports refused (the sandbox's
//! refusals surface as EACCES, EPERM or EROFS on a path, and a missing network as a name that
//! does not resolve).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use portcullis_core::UpstreamName;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader};
use tokio::sync::Notify;

/// How long a line may be (longer ones are cut), and how many are kept.
const LINE_MAX: usize = 2048;
const KEPT: usize = 8;
/// How many of the kept lines an explanation quotes.
const QUOTED: usize = 5;

/// The error codes (and their messages) that say an access was refused.
const REFUSALS: &[(&str, &str)] = &[
    ("EACCES", "EACCES"),
    ("Permission denied", "EACCES"),
    ("EPERM", "EPERM"),
    ("Operation not permitted", "EPERM"),
    ("EROFS", "EROFS"),
    ("Read-only file system", "EROFS"),
];
/// What a name that did not resolve looks like, in the runtimes MCP servers are written in.
const UNRESOLVED: &[&str] = &[
    "EAI_AGAIN",
    "ENOTFOUND",
    "getaddrinfo",
    "Name or service not known",
    "Temporary failure in name resolution",
    "failed to lookup address",
];

/// One start's stderr: the last lines, and whether the stream has ended.
#[derive(Default)]
pub(crate) struct StderrTail {
    lines: Mutex<VecDeque<String>>,
    ended: AtomicBool,
    ended_signal: Notify,
}

impl StderrTail {
    /// Reads `stderr` to its end, logging each line and keeping the last ones.
    pub(crate) async fn read(&self, name: UpstreamName, stderr: tokio::process::ChildStderr) {
        let mut reader = BufReader::new(stderr);
        let mut line = Vec::new();
        loop {
            line.clear();
            match (&mut reader)
                .take(LINE_MAX as u64)
                .read_until(b'\n', &mut line)
                .await
            {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line).trim_end().to_owned();
                    tracing::debug!(upstream = %name, stderr = %text, "upstream stderr");
                    if let Ok(mut lines) = self.lines.lock() {
                        if lines.len() == KEPT {
                            lines.pop_front();
                        }
                        lines.push_back(text);
                    }
                }
            }
        }
        self.ended.store(true, Ordering::Release);
        self.ended_signal.notify_waiters();
    }

    /// What the upstream's stderr says of why it stopped, once the stream has ended (waiting at
    /// most `limit` for that): its last lines, and the accesses they report refused. `None`
    /// when it wrote nothing.
    pub(crate) async fn explain(&self, limit: Duration) -> Option<String> {
        let ended = self.ended_signal.notified();
        if !self.ended.load(Ordering::Acquire) {
            let _ = tokio::time::timeout(limit, ended).await;
        }
        let lines: Vec<String> = self.lines.lock().ok()?.iter().cloned().collect();
        explanation(&lines)
    }
}

/// The explanation of `lines`, a stderr's last lines: secrets redacted first.
fn explanation(lines: &[String]) -> Option<String> {
    let secrets = crate::secrets::Secrets::global();
    let lines: Vec<String> = lines
        .iter()
        .filter(|line| !line.trim().is_empty())
        .map(|line| secrets.redact_text(line).0)
        .collect();
    let last = lines
        .get(lines.len().saturating_sub(QUOTED)..)
        .unwrap_or_default();
    let quoted = last.join(" | ");
    if quoted.is_empty() {
        return None;
    }
    let mut text = format!("its stderr ended with: {quoted}");
    let refused = refused_accesses(&lines);
    if !refused.is_empty() {
        text.push_str(&format!(
            "; refused (by the sandbox, unless it says otherwise): {}; grant what it needs in its sandbox table, or see `portcullis check`",
            refused.join(", ")
        ));
    }
    if lines
        .iter()
        .any(|line| UNRESOLVED.iter().any(|needle| line.contains(needle)))
    {
        text.push_str("; it could not resolve a host name: a contained upstream reaches no network unless its sandbox's `tcp_connect` grants it");
    }
    Some(text)
}

/// Each path a line reports refused, with the error code: "`/root/.npmrc` (EACCES)".
fn refused_accesses(lines: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for line in lines {
        let Some((_, code)) = REFUSALS.iter().find(|(needle, _)| line.contains(needle)) else {
            continue;
        };
        let entry = match first_path(line) {
            Some(path) => format!("`{path}` ({code})"),
            None => (*code).to_owned(),
        };
        if !found.contains(&entry) {
            found.push(entry);
        }
    }
    found
}

/// The first absolute path in `line`, up to a quote, a space or a bracket.
fn first_path(line: &str) -> Option<&str> {
    let start = line
        .char_indices()
        .find(|&(i, c)| {
            c == '/'
                && line[..i]
                    .chars()
                    .next_back()
                    .is_none_or(|before| matches!(before, ' ' | '\'' | '"' | '(' | '`' | '='))
        })
        .map(|(i, _)| i)?;
    let rest = &line[start..];
    let end = rest
        .find(['\'', '"', ' ', ')', '`', ',', ':'])
        .unwrap_or(rest.len());
    (end > 1).then(|| &rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &[&str]) -> Vec<String> {
        text.iter().map(|line| (*line).to_owned()).collect()
    }

    #[test]
    fn refusals_are_named_with_their_paths() {
        let said = lines(&[
            "npm error code EACCES",
            "npm error syscall open",
            "npm error path /root/.npmrc",
            "Error: EACCES: permission denied, uv_os_homedir",
            "OSError: [Errno 30] Read-only file system: '/home/u/.cache/uv'",
            "PermissionError: [Errno 13] Permission denied: '/etc/app.conf'",
        ]);
        let text = explanation(&said).unwrap_or_default();
        assert!(text.contains("`/home/u/.cache/uv` (EROFS)"), "{text}");
        assert!(text.contains("`/etc/app.conf` (EACCES)"), "{text}");
        assert!(text.contains("EACCES"), "{text}");
        assert!(
            text.starts_with("its stderr ended with: npm error syscall open"),
            "{text}"
        );
    }

    #[test]
    fn a_name_that_did_not_resolve_points_at_the_network_grant() {
        let said = lines(&[
            "npm error request to https://registry.npmjs.org/x failed, reason: getaddrinfo EAI_AGAIN registry.npmjs.org",
        ]);
        let text = explanation(&said).unwrap_or_default();
        assert!(text.contains("could not resolve a host name"), "{text}");
        assert!(text.contains("tcp_connect"), "{text}");
    }

    #[test]
    fn silence_explains_nothing_and_plain_lines_claim_no_refusal() {
        assert_eq!(explanation(&lines(&["", "  "])), None);
        let text = explanation(&lines(&["listening on stdio"])).unwrap_or_default();
        assert_eq!(text, "its stderr ended with: listening on stdio");
    }
}
