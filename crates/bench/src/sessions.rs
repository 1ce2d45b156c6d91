//! Many session-era HTTP clients at once: Portcullis's own memory with N sessions open (each
//! after its handshake, its tool list and one call), and again after every client closed its
//! session (DELETE), for several rounds: what a session costs, and whether a closed session's
//! memory is used again (flat from round to round) or lost (growing); then, once Portcullis has
//! been idle for a while, whether it went back to the system.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{Value, json};

use crate::measure::{Samples, Summary, run_calls};
use crate::process;
use crate::route::{self, Binaries, Transport};

/// How long Portcullis is given to drop closed sessions before its memory is read again.
const SETTLE: Duration = Duration::from_secs(2);

/// How long Portcullis is left idle after the last round before its memory is read a last
/// time: longer than its allocator takes to give unused pages back (about 10 s).
const IDLE: Duration = Duration::from_secs(15);

/// Rounds of opening and closing the sessions.
const ROUNDS: usize = 6;

/// Portcullis's anonymous resident memory (`RssAnon`, KiB: its heap and stacks, not the pages
/// of its program file, which the page cache shares) around each round of sessions.
pub(crate) struct SessionFigures {
    sessions: usize,
    before_kib: Option<u64>,
    rounds: Vec<Round>,
    /// After the last round and `IDLE` more.
    idle_kib: Option<u64>,
}

struct Round {
    open_kib: Option<u64>,
    closed_kib: Option<u64>,
    /// Each session's handshake, tool list and first call together.
    opening: Summary,
}

fn anon_kib(pid: u32) -> Option<u64> {
    process::memory_kib(pid, "RssAnon")
}

/// Opens `sessions` clients at once on Portcullis (HTTP to a stdio fixture), then closes
/// them, `ROUNDS` times.
pub(crate) async fn measure_sessions(
    binaries: &Binaries,
    sessions: usize,
    durability: Option<&str>,
) -> anyhow::Result<SessionFigures> {
    let scratch = tempfile::tempdir().context("cannot make a scratch directory")?;
    let settings = route::Settings {
        durability,
        // Room for every session and the route's own client, all from one address.
        sessions: Some(sessions + 1),
    };
    let first =
        route::through_portcullis(Transport::HttpStdio, binaries, scratch.path(), 1, settings)
            .await?;
    let pid = first.proxy_pid.context("no process id for portcullis")?;
    let url = first.url.clone().context("an HTTP route without a URL")?;
    // One call first, so that what every route pays once is paid before the reading.
    run_calls(first.client.peer(), 1, 1).await?;
    let before_kib = anon_kib(pid);
    let mut rounds = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        rounds.push(round(&url, sessions, pid).await?);
    }
    tokio::time::sleep(IDLE).await;
    let idle_kib = anon_kib(pid);
    first.close().await;
    Ok(SessionFigures {
        sessions,
        before_kib,
        rounds,
        idle_kib,
    })
}

async fn round(url: &str, sessions: usize, pid: u32) -> anyhow::Result<Round> {
    let started = Instant::now();
    let opening: Vec<_> = (0..sessions)
        .map(|_| {
            let url = url.to_owned();
            tokio::spawn(async move {
                let began = Instant::now();
                let client = route::connect_http(&url, 1).await?;
                run_calls(client.peer(), 1, 1).await?;
                anyhow::Ok((client, began.elapsed()))
            })
        })
        .collect();
    let mut durations = Vec::with_capacity(sessions);
    let mut clients = Vec::with_capacity(sessions);
    for task in opening {
        let (client, took) = task.await?.context("opening a session")?;
        clients.push(client);
        durations.push(took);
    }
    let wall = started.elapsed();
    let open_kib = anon_kib(pid);
    let closing: Vec<_> = clients
        .into_iter()
        .map(|client| tokio::spawn(async move { client.cancel().await.ok() }))
        .collect();
    for task in closing {
        task.await?;
    }
    tokio::time::sleep(SETTLE).await;
    Ok(Round {
        open_kib,
        closed_kib: anon_kib(pid),
        opening: Samples::new(durations, wall).summary(),
    })
}

impl SessionFigures {
    /// KiB per open session in the first round: what its sessions added to the memory before.
    fn per_session_kib(&self) -> Option<f64> {
        let grown = self
            .rounds
            .first()?
            .open_kib?
            .saturating_sub(self.before_kib?);
        Some(grown as f64 / self.sessions.max(1) as f64)
    }

    pub(crate) fn table(&self) -> String {
        let kib = |value: Option<u64>| value.map_or_else(|| "n/a".to_owned(), |k| format!("{k}"));
        let mut text = format!(
            "\n{} HTTP sessions opened at once on Portcullis (each: handshake, tools/list, one `echo`), then closed, {} rounds. \
             RssAnon before: {} KiB; KiB per session (first round): {}.\n\n\
             | round | RssAnon KiB with the sessions open | {}s after they closed | opening p50 / p99 ms |\n\
             | --- | --- | --- | --- |\n",
            self.sessions,
            self.rounds.len(),
            kib(self.before_kib),
            self.per_session_kib()
                .map_or_else(|| "n/a".to_owned(), |per| format!("{per:.1}")),
            SETTLE.as_secs()
        );
        for (index, round) in self.rounds.iter().enumerate() {
            let _ = writeln!(
                text,
                "| {} | {} | {} | {:.1} / {:.1} |",
                index + 1,
                kib(round.open_kib),
                kib(round.closed_kib),
                round.opening.p50.as_secs_f64() * 1e3,
                round.opening.p99.as_secs_f64() * 1e3,
            );
        }
        let _ = writeln!(
            text,
            "\nRssAnon after the last round and {} s idle: {} KiB.",
            IDLE.as_secs(),
            kib(self.idle_kib)
        );
        text
    }

    pub(crate) fn json(&self) -> Value {
        json!({
            "sessions": self.sessions,
            "rss_anon_before_kib": self.before_kib,
            "kib_per_session": self.per_session_kib(),
            "rounds": self.rounds.iter().map(|round| json!({
                "rss_anon_open_kib": round.open_kib,
                "rss_anon_closed_kib": round.closed_kib,
                "opening_p50_ms": round.opening.p50.as_secs_f64() * 1e3,
                "opening_p99_ms": round.opening.p99.as_secs_f64() * 1e3,
            })).collect::<Vec<_>>(),
            "rss_anon_idle_kib": self.idle_kib,
            "idle_s": IDLE.as_secs(),
        })
    }
}
