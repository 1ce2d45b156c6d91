//! The stdio downstream transport: one JSON-RPC message per line, read with bounds, and every
//! line that is not one answered instead of silently dropped.
//!
//! rmcp's own stdio transport ignores a line that is not JSON (the client then waits for its
//! own timeout, and nothing is logged). Here such a line is answered with a JSON-RPC parse
//! error (-32700, id null), valid JSON that is not a message with invalid request (-32600),
//! and each is logged without echoing the payload. A line longer than [`MAX_LINE`] is never
//! buffered whole: it is discarded up to its newline and answered like any other bad line. A
//! line nested deeper than [`MAX_DEPTH`] is refused before it is parsed. Answers to bad lines are
//! rate-limited, so that a peer that echoes what it receives cannot start an endless exchange.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::service::{RoleServer, RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, AsyncWrite, AsyncWriteExt as _, BufReader};
use tokio::sync::Mutex;

/// The longest line read, as HTTP request bodies are bounded: 4 MiB.
pub(crate) const MAX_LINE: usize = 4 * 1024 * 1024;

/// The deepest nesting of arrays and objects accepted in a message (serde_json's own limit is
/// 128; no MCP message comes near either).
pub(crate) const MAX_DEPTH: usize = 64;

/// At most this many answers to bad lines per second; the rest are logged once and dropped.
const BAD_LINE_ANSWERS_PER_SECOND: u32 = 20;

/// This process's stdin and stdout, as non-blocking pipes that tokio's reactor drives when both
/// are pipes (as when a client starts Portcullis): then no blocking-pool thread stands between
/// a message and the worker that handles it (tokio's `Stdin` and `Stdout` read and write on
/// one, a hand-off each way for every message). Anything else (a terminal, a file) gets tokio's
/// `Stdin` and `Stdout`. Portcullis writes nothing else to stdout, so the non-blocking mode
/// (set on the pipe's description, which only this process's end shares) surprises no one.
pub(crate) fn std_streams() -> (
    Box<dyn AsyncRead + Send + Unpin>,
    Box<dyn AsyncWrite + Send + Unpin>,
) {
    use std::os::fd::AsFd as _;
    use tokio::net::unix::pipe;
    let owned = |fd: std::os::fd::BorrowedFd<'_>| fd.try_clone_to_owned().map(std::fs::File::from);
    let input = owned(std::io::stdin().as_fd()).and_then(pipe::Receiver::from_file);
    let output = owned(std::io::stdout().as_fd()).and_then(pipe::Sender::from_file);
    match (input, output) {
        (Ok(input), Ok(output)) => (Box::new(input), Box::new(output)),
        (input, output) => {
            tracing::debug!(
                stdin_is_pipe = input.is_ok(),
                stdout_is_pipe = output.is_ok(),
                "stdin and stdout are not both pipes; they are read and written on tokio's blocking pool"
            );
            (Box::new(tokio::io::stdin()), Box::new(tokio::io::stdout()))
        }
    }
}

/// A server transport over a reader and a writer (stdin and stdout).
pub(crate) struct StdioTransport<R, W> {
    read: BufReader<R>,
    line: Vec<u8>,
    /// An oversized line is being skipped up to its newline.
    discarding: bool,
    write: Arc<Mutex<W>>,
    /// Answers to bad lines in the current second, and when that second began.
    answered: (u32, Instant),
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> StdioTransport<R, W> {
    pub(crate) fn new(read: R, write: W) -> Self {
        Self {
            read: BufReader::new(read),
            line: Vec::new(),
            discarding: false,
            write: Arc::new(Mutex::new(write)),
            answered: (0, Instant::now()),
        }
    }
}

/// What one bounded read found.
enum Read {
    Line,
    Oversized,
    Eof,
}

/// Why a line is not a message, for its answer and the log.
pub(crate) enum Bad {
    Parse(&'static str),
    Invalid(&'static str),
}

impl Bad {
    /// The JSON-RPC error code and message the line is answered with.
    pub(crate) fn answer(&self) -> (i32, &'static str) {
        match self {
            Bad::Parse(why) => (-32700, *why),
            Bad::Invalid(why) => (-32600, *why),
        }
    }
}

impl<R, W> StdioTransport<R, W>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    /// Reads one line into `self.line`, never past [`MAX_LINE`] bytes. Cancellation-safe: the
    /// bytes read so far stay in `self.line` (and `self.discarding` in `self`), and
    /// `fill_buf`/`consume` lose nothing when the future is dropped.
    async fn read_line(&mut self) -> std::io::Result<Read> {
        loop {
            let available = self.read.fill_buf().await?;
            if available.is_empty() {
                return Ok(Read::Eof);
            }
            let newline = available.iter().position(|byte| *byte == b'\n');
            let take = newline.map_or(available.len(), |at| at + 1);
            if self.discarding {
                self.read.consume(take);
                if newline.is_some() {
                    self.discarding = false;
                    return Ok(Read::Oversized);
                }
                continue;
            }
            if self.line.len() + take > MAX_LINE + 1 {
                // Too long: drop what was kept and skip the rest of the line.
                self.line.clear();
                self.read.consume(take);
                if newline.is_some() {
                    return Ok(Read::Oversized);
                }
                self.discarding = true;
                continue;
            }
            self.line
                .extend_from_slice(available.get(..take).unwrap_or_default());
            self.read.consume(take);
            if newline.is_some() {
                return Ok(Read::Line);
            }
        }
    }

    /// Answers a bad line with a JSON-RPC error of id null, within the rate limit, in a task of
    /// its own (a cancelled `receive` must not cut an answer in half).
    fn answer_bad_line(&mut self, bad: &Bad) {
        let (code, message) = bad.answer();
        tracing::warn!(
            code,
            reason = message,
            "a line from the client is not a JSON-RPC message"
        );
        let (count, since) = &mut self.answered;
        if since.elapsed() >= Duration::from_secs(1) {
            *count = 0;
            *since = Instant::now();
        }
        *count += 1;
        if *count > BAD_LINE_ANSWERS_PER_SECOND {
            if *count == BAD_LINE_ANSWERS_PER_SECOND + 1 {
                tracing::warn!("too many bad lines this second; the rest are not answered");
            }
            return;
        }
        let answer = serde_json::json!({
            "jsonrpc": "2.0",
            "id": null,
            "error": {"code": code, "message": message},
        });
        let mut bytes = answer.to_string().into_bytes();
        bytes.push(b'\n');
        let write = self.write.clone();
        tokio::spawn(async move {
            let mut write = write.lock().await;
            let _ = write.write_all(&bytes).await;
            let _ = write.flush().await;
        });
    }
}

/// The nesting depth of a JSON text, strings skipped; stops counting past `limit`.
pub(crate) fn depth(bytes: &[u8], limit: usize) -> usize {
    let (mut current, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &byte in bytes {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                current += 1;
                deepest = deepest.max(current);
                if deepest > limit {
                    return deepest;
                }
            }
            b']' | b'}' => current = current.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// The message a line holds, `None` for a notification to ignore, or why it is none.
pub(crate) fn parse(line: &[u8]) -> Result<Option<RxJsonRpcMessage<RoleServer>>, Bad> {
    let line = line
        .strip_prefix(b"\xef\xbb\xbf".as_slice())
        .unwrap_or(line);
    let Ok(text) = std::str::from_utf8(line) else {
        return Err(Bad::Parse("parse error: the line is not UTF-8"));
    };
    if depth(line, MAX_DEPTH) > MAX_DEPTH {
        return Err(Bad::Invalid("invalid request: nested too deeply"));
    }
    match serde_json::from_str::<RxJsonRpcMessage<RoleServer>>(text) {
        Ok(message) => Ok(Some(message)),
        Err(error) => match error.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                Err(Bad::Parse("parse error: the line is not JSON"))
            }
            _ => {
                // A notification of a kind rmcp does not know is not an error (clients send
                // their own); anything else that is JSON but no message is.
                let value = serde_json::from_str::<serde_json::Value>(text).ok();
                let notification = value.as_ref().is_some_and(|value| {
                    value.get("id").is_none()
                        && value
                            .get("method")
                            .and_then(serde_json::Value::as_str)
                            .is_some_and(|method| method.starts_with("notifications/"))
                });
                if notification {
                    tracing::debug!("an unknown notification from the client was ignored");
                    Ok(None)
                } else {
                    Err(Bad::Invalid(
                        "invalid request: not a JSON-RPC message MCP knows",
                    ))
                }
            }
        },
    }
}

impl<R, W> Transport<RoleServer> for StdioTransport<R, W>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleServer>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let write = self.write.clone();
        async move {
            let mut bytes = serde_json::to_vec(&item).map_err(std::io::Error::other)?;
            bytes.push(b'\n');
            let mut write = write.lock().await;
            write.write_all(&bytes).await?;
            write.flush().await
        }
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleServer>> {
        loop {
            match self.read_line().await {
                Ok(Read::Line) => {}
                Ok(Read::Oversized) => {
                    self.answer_bad_line(&Bad::Invalid(
                        "invalid request: the line is longer than portcullis accepts (4 MiB)",
                    ));
                    continue;
                }
                Ok(Read::Eof) => return None,
                Err(error) => {
                    tracing::error!(%error, "reading from the client failed");
                    return None;
                }
            }
            let line = std::mem::take(&mut self.line);
            let trimmed = line.strip_suffix(b"\n").unwrap_or(&line);
            let trimmed = trimmed.strip_suffix(b"\r").unwrap_or(trimmed);
            if trimmed.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match parse(trimmed) {
                Ok(Some(message)) => return Some(message),
                Ok(None) => continue,
                Err(bad) => self.answer_bad_line(&bad),
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.write.lock().await.shutdown().await
    }
}

#[cfg(test)]
mod tests {
    use rmcp::model::{ClientRequest, JsonRpcMessage, JsonRpcRequest};

    use super::{MAX_DEPTH, depth, parse};

    /// Found by the `client_message` fuzz target: a `tools/call` whose `params` repeat a member
    /// fails rmcp's typed decoding and is kept as a custom request, which Portcullis answers as
    /// an unknown method: the call never runs (today's rmcp behaviour, asserted as such).
    #[test]
    fn a_call_repeating_a_member_is_no_call() {
        let line = br#"{"jsonrpc":"2.0","id":"a2","method":"tools/call","params":{"name":"files.write_file","arguments":{"path":"/a"},"inputname":"x","arguments":{"path":"/b"}}}"#;
        assert!(matches!(
            parse(line),
            Ok(Some(JsonRpcMessage::Request(JsonRpcRequest {
                request: ClientRequest::CustomRequest(_),
                ..
            })))
        ));
    }

    #[test]
    fn depth_counts_brackets_outside_strings() {
        assert_eq!(depth(br#"{"a":[1,{"b":2}]}"#, MAX_DEPTH), 3);
        assert_eq!(depth(br#"{"a":"[[[[{{{{\"]]"}"#, MAX_DEPTH), 1);
        let deep = "[".repeat(100_000);
        assert!(depth(deep.as_bytes(), MAX_DEPTH) > MAX_DEPTH);
    }
}
