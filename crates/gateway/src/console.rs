//! The console: what Portcullis is doing, served on the approval page's listener (so behind
//! the same `Host` check and with the same headers): the approvals waiting for a person, the
//! evidence as it is written (filterable by user, tool and decision), each upstream's health,
//! and how each is contained. Server-rendered and script-free; each page reloads itself every
//! few seconds (a `Refresh` header), which is what "live" means here.
//!
//! It approves nothing and changes nothing: it has no route but GETs, and a waiting approval
//! is only a link to its own page, where a passkey decides. It shows no argument value: a
//! waiting approval by its tool and user only (its change request holds the values), the
//! evidence as `portcullis audit show` prints it (which never prints arguments). Every value
//! is HTML-escaped, and a character that hides or reorders text (a bidirectional override, a
//! zero-width or control character) is shown as its code point, so that a hostile tool or
//! user name reads as what it is.

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use portcullis_audit::Filter;
use portcullis_core::UpstreamName;

use crate::approval::ledger::{Pending, Standing};
use crate::gateway::Gateway;
use crate::html::{escape, html};
use crate::hygiene::is_hidden;

use crate::sandbox::ContainmentReport;
use crate::upstreams::UpstreamStatus;

/// Records on the overview: the last moments of a busy session.
const OVERVIEW_RECORDS: usize = 20;
/// Records on the activity page.
const ACTIVITY_RECORDS: usize = 200;
/// Seconds between a console page's reloads.
const REFRESH_SECS: &str = "5";
/// The verdicts the activity can be filtered by (`Filter::decision`), "any" first.
const VERDICTS: [&str; 4] = ["", "allow", "approval_required", "deny"];

const NAV: &str = "<p><a href=\"/\">Overview</a> · <a href=\"/activity\">Activity</a> · \
    This console approves nothing: a waiting approval is decided on its own page, with an \
    enrolled passkey, or in a terminal with <code>portcullis approve</code>.</p>";

/// The console's routes, for the approval page's router (whose `Host` check covers them).
pub(crate) fn routes<S: Clone + Send + Sync + 'static>(gateway: Arc<Gateway>) -> Router<S> {
    Router::new()
        .route("/", get(overview))
        .route("/activity", get(activity))
        .with_state(gateway)
}

/// The activity page's filter, as its form sends it (an empty field matches everything).
#[derive(Debug, Default, serde::Deserialize)]
struct ActivityQuery {
    #[serde(default)]
    user: String,
    #[serde(default)]
    tool: String,
    #[serde(default)]
    decision: String,
}

impl ActivityQuery {
    fn filter(&self) -> Filter {
        let set = |value: &str| Some(value.trim().to_owned()).filter(|value| !value.is_empty());
        Filter {
            user: set(&self.user),
            tool: set(&self.tool),
            decision: set(&self.decision),
            since_ms: None,
        }
    }
}

/// GET /: what waits, the latest records, the upstreams and their containment.
async fn overview(State(gateway): State<Arc<Gateway>>) -> Response {
    let now = gateway.evidence.recorder.clock().unix_millis() / 1000;
    let pending = render_pending(&waiting(&gateway).await, now);
    let records = last_records(&gateway, Filter::default(), OVERVIEW_RECORDS).await;
    let body = format!(
        "{NAV}<h2>Waiting for approval</h2>{pending}\
         <h2>Activity</h2><p>The last {OVERVIEW_RECORDS} records, newest first \
         (<a href=\"/activity\">more, filtered</a>).</p>{activity}\
         <h2>Upstreams</h2>{health}<h2>Containment</h2>{containment}",
        activity = render_activity(&records),
        health = render_health(&gateway.status()),
        containment = render_containment(&gateway.containment),
    );
    live(html(StatusCode::OK, "Portcullis console", &body))
}

/// GET /activity?user=&tool=&decision=: the latest records that match, newest first.
async fn activity(
    State(gateway): State<Arc<Gateway>>,
    query: Result<Query<ActivityQuery>, QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return html(
            StatusCode::BAD_REQUEST,
            "Not a filter",
            "<p>The filter takes <code>user</code>, <code>tool</code> and <code>decision</code>.</p>",
        );
    };
    let records = last_records(&gateway, query.filter(), ACTIVITY_RECORDS).await;
    let body = format!(
        "{NAV}{form}<p>The last {ACTIVITY_RECORDS} matching records, newest first, as \
         <code>portcullis audit show</code> prints them.</p>{activity}",
        form = render_filter(&query),
        activity = render_activity(&records),
    );
    live(html(StatusCode::OK, "Portcullis activity", &body))
}

/// A console page that reloads itself: live without a script.
fn live(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::REFRESH, HeaderValue::from_static(REFRESH_SECS));
    response
}

/// Every live approval, off the async threads (the ledger is a locked file, or the shared
/// database waited for on this thread); or why not.
async fn waiting(gateway: &Arc<Gateway>) -> Result<Vec<Pending>, String> {
    let gateway = gateway.clone();
    tokio::task::spawn_blocking(move || gateway.approvals.ledger.list())
        .await
        .map_err(|error| error.to_string())?
        .map_err(|error| error.to_string())
}

/// The last `count` records that match `filter`, newest first, each as `portcullis audit
/// show` prints it, read off the async threads; or why the log cannot be read.
async fn last_records(
    gateway: &Gateway,
    filter: Filter,
    count: usize,
) -> Result<Vec<String>, String> {
    let Some(path) = gateway
        .evidence
        .recorder
        .log()
        .map(|log| log.path().to_path_buf())
    else {
        return Err("no evidence log is open".to_owned());
    };
    tokio::task::spawn_blocking(move || {
        let entries =
            portcullis_audit::tail(&path, filter, count).map_err(|error| error.to_string())?;
        // An unreadable line is named, not quoted: the reader's reason can quote the line,
        // and the line holds arguments.
        Ok(entries
            .iter()
            .rev()
            .map(|entry| match entry {
                Ok(entry) => portcullis_audit::render_line(entry),
                Err(_) => {
                    "a line that cannot be read (`portcullis audit verify` says why)".to_owned()
                }
            })
            .collect())
    })
    .await
    .map_err(|error| error.to_string())?
}

/// `text` for the page: every character that would hide or reorder what a person reads (see
/// `hygiene::is_hidden`) as its code point, `[U+202E]`; then HTML-escaped.
fn shown(text: &str) -> String {
    let mut visible = String::with_capacity(text.len());
    for c in text.chars() {
        if is_hidden(c) {
            visible.push_str(&format!("[U+{:04X}]", u32::from(c)));
        } else {
            visible.push(c);
        }
    }
    escape(&visible)
}

/// A table of `rows`, whose cells are HTML already (each value in them `shown`).
fn table(headings: &[&str], rows: &[Vec<String>]) -> String {
    let head: String = headings
        .iter()
        .map(|heading| format!("<th align=\"left\">{heading}</th>"))
        .collect();
    let body: String = rows
        .iter()
        .map(|row| {
            let cells: String = row.iter().map(|cell| format!("<td>{cell}</td>")).collect();
            format!("<tr>{cells}</tr>")
        })
        .collect();
    format!("<table cellpadding=\"4\"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
}

/// The waiting approvals, oldest first: tool, user, where each stands, its age, and its page.
/// Never its change request, which holds the arguments.
fn render_pending(pending: &Result<Vec<Pending>, String>, now: u64) -> String {
    let pending = match pending {
        Ok(pending) if pending.is_empty() => return "<p>Nothing is waiting.</p>".to_owned(),
        Ok(pending) => pending,
        Err(error) => {
            return format!(
                "<p>The pending approvals cannot be read: {}</p>",
                shown(error)
            );
        }
    };
    let rows: Vec<Vec<String>> = pending
        .iter()
        .map(|approval| {
            let standing = match &approval.standing {
                Standing::Waiting => match &approval.not_by {
                    Some(subject) => format!("waiting for an approver other than {subject}"),
                    None => "waiting".to_owned(),
                },
                Standing::Approved { by, .. } => format!("approved by {by}, not yet run"),
                Standing::Declined { by, .. } => format!("denied by {by}"),
                Standing::Used { .. } => "used".to_owned(),
            };
            vec![
                shown(&approval.tool),
                shown(&approval.user),
                shown(&standing),
                shown(&age(now.saturating_sub(approval.created))),
                format!(
                    "<a href=\"/approvals/{}\">its page</a>",
                    shown(&approval.id)
                ),
            ]
        })
        .collect();
    table(&["Tool", "User", "Standing", "Age", "Decide on"], &rows)
}

/// `seconds` as a person reads an age.
fn age(seconds: u64) -> String {
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3600 => format!("{} min", seconds / 60),
        _ => format!("{} h {} min", seconds / 3600, seconds / 60 % 60),
    }
}

/// Records, one a line, or why there are none.
fn render_activity(records: &Result<Vec<String>, String>) -> String {
    match records {
        Ok(lines) if lines.is_empty() => "<p>No record matches.</p>".to_owned(),
        Ok(lines) => {
            let lines: Vec<String> = lines.iter().map(|line| shown(line)).collect();
            format!(
                "<pre id=\"activity\" style=\"white-space: pre-wrap\">{}</pre>",
                lines.join("\n")
            )
        }
        Err(error) => format!("<p>The evidence log cannot be read: {}</p>", shown(error)),
    }
}

/// The activity's filter: a GET form, so the filtered page is a link too.
fn render_filter(query: &ActivityQuery) -> String {
    let options: String = VERDICTS
        .iter()
        .map(|verdict| {
            let selected = if *verdict == query.decision {
                " selected"
            } else {
                ""
            };
            let label = if verdict.is_empty() { "any" } else { verdict };
            format!("<option value=\"{verdict}\"{selected}>{label}</option>")
        })
        .collect();
    format!(
        "<form method=\"get\" action=\"/activity\">\
         <label>User <input name=\"user\" value=\"{user}\"></label> \
         <label>Tool <input name=\"tool\" value=\"{tool}\"></label> \
         <label>Decision <select name=\"decision\">{options}</select></label> \
         <button type=\"submit\">Filter</button></form>",
        user = shown(&query.user),
        tool = shown(&query.tool),
    )
}

/// Each upstream's state as the gateway sees it now.
fn render_health(status: &[(UpstreamName, UpstreamStatus)]) -> String {
    let rows: Vec<Vec<String>> = status
        .iter()
        .map(|(name, status)| {
            let (state, tools, detail) = match status {
                UpstreamStatus::Ready { tools, protocol } => {
                    ("ready", tools.to_string(), format!("protocol {protocol}"))
                }
                UpstreamStatus::Starting => ("starting", "-".to_owned(), String::new()),
                UpstreamStatus::Down { reason } => ("down", "-".to_owned(), reason.clone()),
                UpstreamStatus::PerUser { running } => (
                    "per user",
                    "-".to_owned(),
                    format!("{running} instances running"),
                ),
            };
            vec![
                shown(name.as_str()),
                state.to_owned(),
                tools,
                shown(&detail),
            ]
        })
        .collect();
    table(&["Upstream", "State", "Tools", "Detail"], &rows)
}

/// How each upstream is contained, as `portcullis check` reports it.
fn render_containment(reports: &[(UpstreamName, ContainmentReport)]) -> String {
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|(name, report)| {
            let (contained, detail) = match report {
                ContainmentReport::Remote => {
                    ("remote", "streamable HTTP, nothing to contain".to_owned())
                }
                ContainmentReport::Uncontained => (
                    "NOT CONTAINED",
                    "contain = false: it runs with all of Portcullis's own access".to_owned(),
                ),
                ContainmentReport::Container(_) => (
                    "container",
                    "contained by its container engine, not by Portcullis's sandbox".to_owned(),
                ),
                ContainmentReport::Contained {
                    description,
                    digest,
                } => (
                    "contained",
                    format!("profile digest: {digest}\n{description}"),
                ),
                ContainmentReport::Unenforceable(error) => (
                    "cannot be contained",
                    format!("so it does not start: {error}"),
                ),
            };
            vec![
                shown(name.as_str()),
                contained.to_owned(),
                format!(
                    "<pre style=\"white-space: pre-wrap; margin: 0\">{}</pre>",
                    shown(&detail)
                ),
            ]
        })
        .collect();
    table(&["Upstream", "Containment", "Profile"], &rows)
}

#[cfg(test)]
mod tests;
