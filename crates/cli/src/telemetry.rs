//! Logs and spans: `tracing` to stderr (text on a terminal, JSON when asked) and, when the
//! environment names an OpenTelemetry collector, the same spans exported over OTLP.
//!
//! A tool call runs in a `tools/call` span carrying the evidence log's `request_id` and the
//! intent record's `evidence_seq`, so a trace, a log line and an evidence record join up.
//! Export is on when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is
//! set (HTTP with JSON by default; the standard `OTEL_*` variables tune it).

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::LogFormat;

/// Libraries whose debug logs print whole requests (arguments, headers), and the exporter's
/// own (which would feed back into the spans it exports): capped at `warn` whatever
/// `PORTCULLIS_LOG` says, so that no log level puts a secret in the log or a trace.
const QUIET_LIBRARIES: &[&str] = &[
    "rmcp",
    "hyper",
    "hyper_util",
    "h2",
    "reqwest",
    "tower",
    "tower_http",
    "axum",
    "rustls",
    "opentelemetry",
    "opentelemetry_sdk",
    "opentelemetry_otlp",
    "opentelemetry_http",
];

const ENDPOINT_VARIABLES: &[&str] = &[
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
];

/// What must be flushed before the process exits.
pub(crate) struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still buffered (bounded by the SDK's export timeout).
    pub(crate) fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown()
        {
            eprintln!("portcullis: could not export the last spans: {error}");
        }
    }
}

/// Libraries never logged, whatever `PORTCULLIS_LOG` asks: the WebAuthn library logs its
/// ceremony states (challenges among them) at trace. The approval page logs what a ceremony
/// decided itself.
const SILENT_LIBRARIES: &[&str] = &["webauthn_rs", "webauthn_rs_core"];

fn filter() -> EnvFilter {
    let mut filter =
        EnvFilter::try_from_env("PORTCULLIS_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let levels = QUIET_LIBRARIES
        .iter()
        .map(|library| format!("{library}=warn"))
        .chain(
            SILENT_LIBRARIES
                .iter()
                .map(|library| format!("{library}=off")),
        );
    for level in levels {
        if let Ok(directive) = level.parse() {
            filter = filter.add_directive(directive);
        }
    }
    filter
}

/// The span exporter, when the environment names a collector and `export` is asked for.
fn provider(export: bool) -> Option<SdkTracerProvider> {
    let wanted = export
        && ENDPOINT_VARIABLES
            .iter()
            .any(|name| std::env::var_os(name).is_some_and(|value| !value.is_empty()));
    if !wanted {
        return None;
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build();
    match exporter {
        Ok(exporter) => Some(
            SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(Resource::builder().with_service_name("portcullis").build())
                .build(),
        ),
        Err(error) => {
            eprintln!("portcullis: spans will not be exported: {error}");
            None
        }
    }
}

/// Installs the global subscriber: logs to stderr (stdout carries MCP in stdio mode) and, for
/// `export`, spans to the collector the environment names.
pub(crate) fn init(format: LogFormat, export: bool) -> Telemetry {
    // No colours: every escape sequence in the log is escaped (see `EscapedStderr`), ours too.
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(|| EscapedStderr(std::io::stderr()))
        .with_ansi(false);
    let logs = match format {
        LogFormat::Text => logs.boxed(),
        LogFormat::Json => logs.json().boxed(),
    };
    let provider = provider(export);
    let spans = provider
        .as_ref()
        .map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer("portcullis")));
    tracing_subscriber::registry()
        .with(filter())
        .with(logs)
        .with(spans)
        .init();
    Telemetry { provider }
}

/// Stderr, with every character that could forge or hide a log line escaped: a field's value
/// (an upstream's tool name, an error text, a message) may hold a newline that would start a
/// fake log line, an ESC that would write to the reader's terminal, or a bidi override or
/// line separator that would reorder what a person reads. The formatter writes each event in
/// one piece ending in its own newline, which alone is kept.
struct EscapedStderr(std::io::Stderr);

impl std::io::Write for EscapedStderr {
    fn write(&mut self, event: &[u8]) -> std::io::Result<usize> {
        let (body, end) = match event.strip_suffix(b"\n") {
            Some(body) => (body, "\n"),
            None => (event, ""),
        };
        let text = String::from_utf8_lossy(body);
        // No secret Portcullis holds reaches the log, whichever library wrote the line.
        let (text, _) = portcullis_gateway::secrets::Secrets::global().redact_text(&text);
        let mut escaped = escape_log_text(&text);
        escaped.push_str(end);
        self.0.write_all(escaped.as_bytes())?;
        Ok(event.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// `text` with control characters (C0 but tab, DEL, C1), bidi controls and line and paragraph
/// separators written as `\n`, `\r` or `\uXXXX`: readable, and still valid inside a JSON
/// string.
pub(crate) fn escape_log_text(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '\n' => escaped.push_str("\\n"),
            '\r' => escaped.push_str("\\r"),
            '\t' => escaped.push('\t'),
            c if c.is_control() || is_bidi_or_separator(c) => {
                escaped.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => escaped.push(c),
        }
    }
    escaped
}

/// Bidi embedding, override and isolate controls, marks, and the line and paragraph separators.
fn is_bidi_or_separator(character: char) -> bool {
    matches!(
        character,
        '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
            | '\u{2028}' | '\u{2029}'
    )
}

#[cfg(test)]
mod tests {
    use super::escape_log_text;

    #[test]
    fn nothing_in_a_field_can_start_a_line_or_reach_the_terminal() {
        for (raw, escaped) in [
            ("plain text", "plain text"),
            (
                "a\n2026-12-05T00:00:00Z  INFO forged",
                "a\\n2026-12-05T00:00:00Z  INFO forged",
            ),
            ("cr\rover", "cr\\rover"),
            ("\u{1b}[31mred", "\\u001b[31mred"),
            ("del\u{7f}", "del\\u007f"),
            ("c1\u{9b}31m", "c1\\u009b31m"),
            ("evil\u{202e}txt.exe", "evil\\u202etxt.exe"),
            ("line\u{2028}sep", "line\\u2028sep"),
            ("tab\tkept", "tab\tkept"),
            ("unicode é 名前", "unicode é 名前"),
        ] {
            assert_eq!(escape_log_text(raw), escaped, "{raw:?}");
        }
    }
}
