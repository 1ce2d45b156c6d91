//! Roots as a boundary: the path arguments of a call to a local (stdio) upstream are checked
//! against the effective roots before the call leaves Portcullis.
//!
//! The effective roots of a session and upstream are the roots config grants that identity at
//! that upstream (the upstream's `roots`, or with `roots_for` those of the entries naming the
//! user or one of their groups, within the upstream's), intersected with the client's roots
//! when the client offers them (`effective_roots`). Path
//! arguments are the tool's configured pointers plus what its input schema names (see
//! `portcullis-roots`). A call to an HTTP upstream is not checked: its paths name another
//! machine's filesystem. A stdio upstream without roots is not checked either; contained, its
//! sandbox grants it no directory to write in and nothing outside what it needs to run.
//!
//! INVARIANT: any doubt denies: roots that cannot be resolved, a schema whose path arguments
//! cannot be found, a value that does not resolve, all refuse the call.

use std::collections::BTreeSet;
use std::path::Path;

use portcullis_config::{Grantee, TildeRule, Upstream, UpstreamTransport};
use portcullis_roots::{CheckedPath, PathArguments, Resolver, Roots, Tilde, effective_roots};
use rmcp::model::{JsonObject, Tool};

/// What a stdio upstream's path arguments are checked against.
pub struct PathGuard {
    granted: Result<Roots, String>,
    /// `roots_for`: the roots of the identities a user or group names (empty: every identity
    /// gets `granted`).
    narrowed: Vec<(Grantee, Result<Roots, String>)>,
    resolver: Result<Resolver, String>,
}

/// Whom a check is for: the user's subject and groups.
#[derive(Debug, Clone, Copy)]
pub struct Grantor<'a> {
    pub subject: &'a str,
    pub groups: &'a BTreeSet<String>,
}

impl PathGuard {
    /// The guard for `spec`, or `None` when its calls are not checked (an HTTP upstream, one
    /// without roots, or `check_paths = false`).
    pub fn for_upstream(spec: &Upstream) -> Option<Self> {
        let UpstreamTransport::Stdio { cwd, .. } = &spec.transport else {
            return None;
        };
        if spec.roots.is_empty() || !spec.check_paths {
            return None;
        }
        let granted = Roots::from_paths(&spec.roots).map_err(|error| error.to_string());
        let tilde = match &spec.tilde {
            TildeRule::Deny => Tilde::Deny,
            TildeRule::Literal => Tilde::Literal,
            TildeRule::Expand(home) => Tilde::Expand(home.clone()),
        };
        let resolver = Resolver::new(absolute(cwd), tilde).map_err(|error| error.to_string());
        let narrowed = spec
            .roots_for
            .iter()
            .map(|entry| {
                (
                    entry.grantee.clone(),
                    Roots::from_paths(&entry.roots).map_err(|error| error.to_string()),
                )
            })
            .collect();
        Some(Self {
            granted,
            narrowed,
            resolver,
        })
    }

    /// The roots config grants `who` at this upstream: the upstream's, or (with `roots_for`)
    /// those of the entries naming them, within the upstream's. Nobody known (an upstream
    /// asking outside any call, for all the identities its one process serves): the
    /// upstream's, the bound its sandbox holds it to.
    fn granted_to(&self, who: Option<Grantor<'_>>) -> Result<Roots, String> {
        let granted = self
            .granted
            .as_ref()
            .map_err(|error| format!("its upstream's roots cannot be resolved ({error})"))?;
        let Some(who) = who.filter(|_| !self.narrowed.is_empty()) else {
            return Ok(granted.clone());
        };
        let mut parts = Vec::new();
        for (grantee, roots) in &self.narrowed {
            if grantee.names(who.subject, who.groups) {
                let roots = roots.as_ref().map_err(|error| {
                    format!("the roots config grants this identity cannot be resolved ({error})")
                })?;
                parts.push(effective_roots(Some(roots), granted));
            }
        }
        Ok(Roots::union(parts))
    }

    /// Checks `arguments` of a call of `tool` (its listed definition, whose schema names its
    /// path arguments, with the configured `pointers`) against the granted roots narrowed by
    /// the client's: every path checked, where it resolved; `Err` is the message for the
    /// client.
    pub fn check(
        &self,
        tool: &Tool,
        pointers: &[String],
        arguments: Option<&JsonObject>,
        client: Option<&Roots>,
        who: Grantor<'_>,
    ) -> Result<Vec<CheckedPath>, String> {
        let granted = self.granted_to(Some(who))?;
        let resolver = self
            .resolver
            .as_ref()
            .map_err(|error| format!("its upstream's working directory is unusable ({error})"))?;
        let schema = serde_json::Value::Object((*tool.input_schema).clone());
        let found = PathArguments::from_schema(&schema, pointers)
            .map_err(|error| format!("its path arguments cannot be determined ({error})"))?;
        let roots = effective_roots(client, &granted);
        let value = serde_json::Value::Object(arguments.cloned().unwrap_or_default());
        found
            .check_arguments(&value, resolver, &roots)
            .map_err(|denied| denied.to_string())
    }

    /// Checks a resource URI (a `resources/read` or subscription) the way a path argument is
    /// checked: a `file:` URI (any letter case) must resolve inside the effective roots;
    /// another scheme names something the upstream defines, not a local file, and passes.
    /// `Err` is the message for the client.
    pub fn check_uri(
        &self,
        uri: &str,
        client: Option<&Roots>,
        who: Grantor<'_>,
    ) -> Result<(), String> {
        if !is_file_uri(uri) {
            return Ok(());
        }
        let granted = self.granted_to(Some(who))?;
        let resolver = self
            .resolver
            .as_ref()
            .map_err(|error| format!("its upstream's working directory is unusable ({error})"))?;
        let roots = effective_roots(client, &granted);
        resolver
            .resolve_uri_within(&roots, uri)
            .map(|_| ())
            .map_err(|denied| denied.to_string())
    }

    /// The effective roots as `file://` URIs, for an upstream that asks for them.
    pub fn root_uris(&self, client: Option<&Roots>, who: Option<Grantor<'_>>) -> Vec<String> {
        let Ok(granted) = self.granted_to(who) else {
            return Vec::new();
        };
        effective_roots(client, &granted)
            .iter()
            .map(file_uri)
            .collect()
    }
}

/// Whether `uri`'s scheme is `file` (schemes are case-insensitive, RFC 3986 section 3.1).
fn is_file_uri(uri: &str) -> bool {
    uri.split_once(':')
        .is_some_and(|(scheme, _)| scheme.trim().eq_ignore_ascii_case("file"))
}

/// `cwd` made absolute against Portcullis's own working directory, as the child will see it.
fn absolute(cwd: &Path) -> std::path::PathBuf {
    if cwd.is_absolute() {
        return cwd.to_path_buf();
    }
    std::env::current_dir()
        .map(|here| here.join(cwd))
        .unwrap_or_else(|_| cwd.to_path_buf())
}

/// A `file://` URI for an absolute path, percent-encoding what a URI path may not hold.
fn file_uri(path: &Path) -> String {
    let mut uri = String::from("file://");
    for byte in path.as_os_str().as_encoded_bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => {
                uri.push(char::from(*byte));
            }
            other => uri.push_str(&format!("%{other:02X}")),
        }
    }
    uri
}

/// The client's roots from a `roots/list` answer (unusable entries are dropped and logged).
pub(crate) fn client_roots(uris: &[String]) -> Roots {
    let (roots, problems) = Roots::from_client_uris(uris);
    for problem in problems {
        tracing::warn!(%problem, "a root the client offered is not used");
    }
    roots
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::file_uri;

    #[test]
    fn root_uris_are_percent_encoded_once() {
        assert_eq!(file_uri(Path::new("/srv/work")), "file:///srv/work");
        assert_eq!(file_uri(Path::new("/srv/a b%")), "file:///srv/a%20b%25");
    }
}
