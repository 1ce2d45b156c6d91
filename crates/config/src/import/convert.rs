//! One client server turned into one planned upstream: variables resolved where they have a
//! value, secrets moved out into named variables, roots proposed from directory arguments.
//! Values of `env` and headers never reach a message or the planned upstream unless they are
//! plainly not secret.

use std::collections::BTreeMap;
use std::path::Path;

use crate::checks::{is_env_name, is_loopback_authority};
use crate::launcher::{Launcher, launcher};
use crate::remote::RESERVED_HEADERS;

use super::clients::{ClientServer, HeaderValue, Input};

/// What the conversion may know of the machine: the caller reads it.
pub(crate) struct Context<'a> {
    pub home: &'a Path,
    /// `${workspaceFolder}` for this file, when it has one.
    pub workspace: Option<&'a Path>,
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub is_dir: &'a dyn Fn(&Path) -> bool,
    pub inputs: &'a BTreeMap<String, Input>,
}

/// An upstream to write, and the secrets it needs set.
pub(crate) struct Planned {
    pub transport: PlannedTransport,
    pub notes: Vec<String>,
    pub secrets: Vec<SecretUse>,
}

pub(crate) enum PlannedTransport {
    Stdio {
        command: Vec<String>,
        cwd: Option<String>,
        /// Values shown to be no secret.
        env: BTreeMap<String, String>,
        inherit_env: Vec<String>,
        roots: Vec<String>,
    },
    Remote {
        url: String,
        /// Lower-case name, variable, prefix.
        headers: Vec<(String, String, String)>,
    },
}

/// A variable the person must set (in Portcullis's environment, or `portcullis secret set`).
pub(crate) struct SecretUse {
    pub variable: String,
    /// Where its value is: "its value in the client's file (not copied)", an input, another
    /// variable.
    pub origin: String,
    /// The value the client's file holds, kept only to tell two different values for one
    /// variable apart; never written or shown.
    pub written: Option<String>,
}

/// The server as an upstream, or why it cannot be one.
pub(crate) fn convert(
    server: &ClientServer,
    upstream: &str,
    context: &Context<'_>,
) -> Result<Planned, String> {
    if let Some(why) = &server.unreadable {
        return Err(why.clone());
    }
    if server.disabled {
        return Err("it is disabled in the client".to_owned());
    }
    let workspace = server.workspace.as_deref().map(Path::new);
    let context = Context {
        workspace: workspace.or(context.workspace),
        ..*context
    };
    let mut notes: Vec<String> = server
        .ignored
        .iter()
        .map(|key| format!("`{key}` is not imported (Portcullis has no such setting)"))
        .collect();
    let planned = match (&server.command, &server.url) {
        (Some(command), None) => stdio(server, command, &context, &mut notes)?,
        (None, Some(url)) => remote(server, upstream, url, &context, &mut notes)?,
        (Some(_), Some(_)) => return Err("it has both a `command` and a `url`".to_owned()),
        (None, None) => return Err("it has neither a `command` nor a `url`".to_owned()),
    };
    Ok(Planned { notes, ..planned })
}

fn stdio(
    server: &ClientServer,
    command: &str,
    context: &Context<'_>,
    notes: &mut Vec<String>,
) -> Result<Planned, String> {
    if let Some(kind) = server.transport.as_deref().filter(|t| *t != "stdio") {
        return Err(format!("it has a `command` and `type = \"{kind}\"`"));
    }
    let mut line: Vec<String> = std::iter::once(command)
        .chain(server.args.iter().map(String::as_str))
        .map(|word| expand(word, context))
        .collect::<Result<_, _>>()?;
    let mut secrets = container_environment(&mut line);
    secret_arguments(&line)?;
    let launched = launcher(&line)?;
    let cwd = server
        .cwd
        .as_deref()
        .map(|cwd| expand(cwd, context))
        .transpose()?;
    let mut env = BTreeMap::new();
    let mut inherit_env: Vec<String> = secrets.iter().map(|s| s.variable.clone()).collect();
    for (name, value) in &server.env {
        if !is_env_name(name) {
            return Err(format!("`env` key `{name}` is not a variable name"));
        }
        match moved_value(value, context)? {
            Value::Plain(value) if plainly_not_secret(name, &value) => {
                env.insert(name.clone(), value);
            }
            moved => {
                if !inherit_env.contains(name) {
                    inherit_env.push(name.clone());
                }
                secrets.push(moved.secret(name));
            }
        }
    }
    match &launched {
        // The engine's client needs to find itself and its own configuration.
        Some(Launcher::Container(_)) => {
            for name in ["HOME", "PATH"] {
                if !inherit_env.iter().any(|n| n == name) {
                    inherit_env.insert(0, name.to_owned());
                }
            }
        }
        Some(Launcher::Npm(_) | Launcher::Pypi(_)) => {}
        // Clients start a bare program name from the person's PATH: so does the upstream.
        None if !command.contains('/')
            && !env.contains_key("PATH")
            && !inherit_env.iter().any(|n| n == "PATH") =>
        {
            inherit_env.insert(0, "PATH".to_owned());
        }
        None => {}
    }
    let mut roots: Vec<String> = Vec::new();
    for arg in line.iter().skip(1) {
        let path = arg.split_once('=').map_or(arg.as_str(), |(_, value)| value);
        let path = Path::new(path);
        if path.is_absolute()
            && path != Path::new("/")
            && (context.is_dir)(path)
            && !roots.iter().any(|r| Path::new(r) == path)
        {
            roots.push(path.display().to_string());
        }
    }
    if line.iter().skip(1).any(|arg| arg == "/") {
        notes.push("its argument `/` (the whole disk) is not proposed as a root".to_owned());
    }
    Ok(Planned {
        transport: PlannedTransport::Stdio {
            command: line,
            cwd,
            env,
            inherit_env,
            roots,
        },
        notes: Vec::new(),
        secrets,
    })
}

fn remote(
    server: &ClientServer,
    upstream: &str,
    url: &str,
    context: &Context<'_>,
    notes: &mut Vec<String>,
) -> Result<Planned, String> {
    match server.transport.as_deref() {
        None | Some("http" | "streamable-http" | "streamableHttp") => {}
        Some("sse") => notes.push(
            "the client reached it over HTTP+SSE (`type = \"sse\"`); Portcullis speaks streamable HTTP: if it does not start, use the server's streamable HTTP URL (often `/mcp` rather than `/sse`)".to_owned(),
        ),
        Some(other) => return Err(format!("`type = \"{other}\"` with a `url` is not a transport Portcullis speaks")),
    }
    let url = expand(url, context)?;
    // INVARIANT: a URL is quoted or written only when it cannot carry a credential: not in its
    // user part, not in its query (API keys often ride there). Portcullis sends a remote's
    // secrets only as headers.
    let authority = url.split_once("://").map_or("", |(_, rest)| {
        rest.split(['/', '?', '#']).next().unwrap_or("")
    });
    if authority.contains('@') || url.contains('?') {
        return Err(
            "its URL carries a user or a query, which may hold a credential that would be written into the config; Portcullis sends a remote's secrets only as headers (`headers = { NAME = { env = \"VARIABLE\" } }`), so add it by hand if the server takes one".to_owned(),
        );
    }
    if let Some(rest) = url.strip_prefix("http://")
        && !is_loopback_authority(rest)
    {
        return Err(format!(
            "`{url}` is plain http to a host that is not loopback: anyone on the way could read the calls and their credentials; use its https URL"
        ));
    }
    let mut headers = Vec::new();
    let mut secrets = Vec::new();
    for (name, value) in &server.headers {
        let lower = name.to_ascii_lowercase();
        if RESERVED_HEADERS.contains(&lower.as_str()) {
            notes.push(format!(
                "header `{name}` is not imported: the transport sets it itself"
            ));
            continue;
        }
        let (prefix, moved) = match value {
            HeaderValue::FromEnv { variable, prefix } => (
                prefix.clone(),
                Value::Variable {
                    variable: variable.clone(),
                    origin: format!("the client read it from `{variable}`"),
                },
            ),
            HeaderValue::Written(value) => {
                let (prefix, rest) = split_scheme(value);
                (prefix.to_owned(), moved_value(rest, context)?)
            }
        };
        let fallback = if lower == "authorization" {
            format!("{}_TOKEN", variable_case(upstream))
        } else {
            format!("{}_{}", variable_case(upstream), variable_case(name))
        };
        let secret = moved.secret(&fallback);
        headers.push((lower, secret.variable.clone(), prefix));
        secrets.push(secret);
    }
    Ok(Planned {
        transport: PlannedTransport::Remote { url, headers },
        notes: Vec::new(),
        secrets,
    })
}

/// A container line's `-e NAME=value` (`--env`, `--env=`) whose value is not plainly a
/// non-secret, rewritten to `-e NAME`: the engine then takes it from its own environment,
/// which inherits it from Portcullis's.
fn container_environment(line: &mut [String]) -> Vec<SecretUse> {
    let engine = line
        .first()
        .and_then(|program| program.rsplit('/').next())
        .is_some_and(|name| name == "docker" || name == "podman");
    let mut secrets = Vec::new();
    if !engine {
        return secrets;
    }
    let mut option = false;
    for word in line.iter_mut().skip(1) {
        let (prefix, assignment) = match word.strip_prefix("--env=") {
            Some(rest) => ("--env=", rest.to_owned()),
            None if option => ("", word.clone()),
            None => {
                option = word == "-e" || word == "--env";
                continue;
            }
        };
        option = false;
        if let Some((name, value)) = assignment.split_once('=')
            && is_env_name(name)
            && !plainly_not_secret(name, value)
        {
            secrets.push(Value::Plain(value.to_owned()).secret(name));
            *word = format!("{prefix}{name}");
        }
    }
    secrets
}

/// Prefixes of well-known token formats (GitHub, OpenAI-style, Slack, GitLab).
const TOKEN_PREFIXES: &[&str] = &[
    "ghp_",
    "gho_",
    "github_pat_",
    "sk-",
    "xoxb-",
    "xoxp-",
    "glpat-",
];

/// INVARIANT: a command line that carries a secret is refused, never written: an option
/// named like one (`--api-key KEY`, `--token=KEY`) with its value, or a word in a well-known
/// token format. The config has no way to take an argument from a variable.
fn secret_arguments(line: &[String]) -> Result<(), String> {
    let mut words = line.iter().skip(1).peekable();
    while let Some(word) = words.next() {
        let (flag, inline) = match word.split_once('=') {
            Some((flag, value)) => (flag, Some(value)),
            None => (word.as_str(), None),
        };
        let named = secret_named(flag.trim_start_matches('-'));
        let valued = inline.is_some_and(|v| !v.is_empty())
            || (flag.starts_with('-') && words.peek().is_some_and(|next| !next.starts_with('-')));
        if named && valued {
            return Err(format!(
                "its argument `{flag}` passes a secret on the command line, which would be written into the config; give the server the secret through `env` if it reads one"
            ));
        }
        if TOKEN_PREFIXES
            .iter()
            .any(|prefix| word.starts_with(prefix) || inline.is_some_and(|v| v.starts_with(prefix)))
        {
            return Err(
                "an argument looks like a token, which would be written into the config; give the server the secret through `env` if it reads one".to_owned(),
            );
        }
    }
    Ok(())
}

/// A value of `env` or a header, once its whole-value references are read.
enum Value {
    /// Written in the file (variables inside it expanded): maybe a secret.
    Plain(String),
    /// A VS Code input: the editor asked the person for it.
    Input { id: String, description: String },
    /// Another variable the client read it from.
    Variable { variable: String, origin: String },
}

impl Value {
    /// The variable that will hold it, named `fallback` unless it names its own.
    fn secret(self, fallback: &str) -> SecretUse {
        match self {
            Value::Plain(value) => SecretUse {
                variable: fallback.to_owned(),
                origin: "its value is in the client's file (not copied)".to_owned(),
                written: Some(value),
            },
            Value::Input { id, description } => SecretUse {
                variable: fallback.to_owned(),
                origin: if description.is_empty() {
                    format!("VS Code input `{id}`")
                } else {
                    format!("VS Code input `{id}`: {description}")
                },
                written: None,
            },
            Value::Variable { variable, origin } => SecretUse {
                variable,
                origin,
                written: None,
            },
        }
    }
}

fn moved_value(value: &str, context: &Context<'_>) -> Result<Value, String> {
    if let Some(inner) = value.strip_prefix("${").and_then(|v| v.strip_suffix('}'))
        && !inner.contains(['$', '{', '}'])
    {
        if let Some(id) = inner.strip_prefix("input:") {
            let description = context
                .inputs
                .get(id)
                .map(|input| input.description.clone())
                .ok_or_else(|| format!("it takes input `{id}`, which the file does not declare"))?;
            return Ok(Value::Input {
                id: id.to_owned(),
                description,
            });
        }
        let variable = inner.strip_prefix("env:").unwrap_or(inner);
        if is_env_name(variable) {
            return Ok(Value::Variable {
                variable: variable.to_owned(),
                origin: format!("the client read it from `{variable}`"),
            });
        }
    }
    // INVARIANT: an input inside a longer value cannot be moved into a variable whole.
    if value.contains("${input:") {
        return Err(
            "a value holds a VS Code input inside other text; Portcullis passes it only as a whole variable".to_owned(),
        );
    }
    expand(value, context).map(Value::Plain)
}

/// `Bearer TOKEN` → (`Bearer `, `TOKEN`): the scheme stays in the config as the prefix.
fn split_scheme(value: &str) -> (&str, &str) {
    for scheme in ["Bearer ", "Basic ", "Token ", "bearer "] {
        if let Some(rest) = value.strip_prefix(scheme) {
            return (scheme, rest);
        }
    }
    ("", value)
}

/// `${workspaceFolder}`, `${userHome}`, `${env:NAME}` (and Claude Code's `${NAME}`,
/// `${NAME:-default}`) replaced by their values; a variable without one, an input, or a
/// secret-named variable refuses the text (its value would be written into the config).
pub(crate) fn expand(text: &str, context: &Context<'_>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(rest.get(..start).unwrap_or(""));
        let after = rest.get(start + 2..).unwrap_or("");
        // Not quoted: the text may be a secret.
        let Some(end) = after.find('}') else {
            return Err("a value has a `${` without its `}`".to_owned());
        };
        let name = after.get(..end).unwrap_or("");
        out.push_str(&variable_value(name, context)?);
        rest = after.get(end + 1..).unwrap_or("");
    }
    out.push_str(rest);
    Ok(out)
}

fn variable_value(name: &str, context: &Context<'_>) -> Result<String, String> {
    let path = |path: &Path| path.display().to_string();
    match name {
        "userHome" => return Ok(path(context.home)),
        "pathSeparator" | "/" => return Ok("/".to_owned()),
        "workspaceFolder" | "workspaceRoot" => {
            return context.workspace.map(path).ok_or_else(|| {
                format!("`${{{name}}}` has no value here: run `portcullis import` in the workspace")
            });
        }
        "workspaceFolderBasename" => {
            return context
                .workspace
                .and_then(Path::file_name)
                .map(|base| base.to_string_lossy().into_owned())
                .ok_or_else(|| format!("`${{{name}}}` has no value here"));
        }
        _ => {}
    }
    if let Some(id) = name.strip_prefix("input:") {
        return Err(format!(
            "it uses VS Code input `{id}` in its command or URL; Portcullis passes secrets only as environment variables"
        ));
    }
    let reference = name.strip_prefix("env:").unwrap_or(name);
    let (variable, default) = match reference.split_once(":-") {
        Some((variable, default)) => (variable, Some(default)),
        None => (reference, None),
    };
    if !is_env_name(variable) {
        return Err(format!("`${{{name}}}` is not a variable `import` knows"));
    }
    if secret_named(variable) {
        return Err(format!(
            "its command or URL takes `${{{name}}}`, whose value (a secret) would be written into the config"
        ));
    }
    (context.env)(variable)
        .or_else(|| default.map(str::to_owned))
        .ok_or_else(|| format!("`${{{name}}}` has no value: `{variable}` is not set"))
}

/// Whether a variable's name says it holds a secret.
fn secret_named(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with("_pat")
        || [
            "token",
            "secret",
            "key",
            "pass",
            "auth",
            "cookie",
            "credential",
            "private",
            "session",
        ]
        .iter()
        .any(|part| lower.contains(part))
}

/// INVARIANT: a value is written into the config only when it is plainly no secret: its
/// name says nothing of one, and it is a switch, a number, a lower-case word or an absolute
/// path. Anything else (a token, a URL that may carry credentials, any mixed text) becomes a
/// variable: asking for one variable too many costs a line; a secret in the file cannot be
/// taken back.
fn plainly_not_secret(name: &str, value: &str) -> bool {
    if secret_named(name) || value.len() > 64 {
        return false;
    }
    let word = |v: &str| {
        v.len() <= 24
            && v.starts_with(|c: char| c.is_ascii_lowercase())
            && v.bytes()
                .all(|b| b.is_ascii_lowercase() || b"._-".contains(&b))
    };
    let number =
        !value.is_empty() && value.len() <= 10 && value.bytes().all(|b| b.is_ascii_digit());
    let path = value.starts_with('/')
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b));
    let switch = [
        "true", "false", "TRUE", "FALSE", "True", "False", "yes", "no", "on", "off",
    ]
    .contains(&value);
    value.is_empty() || word(value) || number || path || switch
}

/// `my-server` → `MY_SERVER`.
fn variable_case(text: &str) -> String {
    let upper: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    if upper.starts_with(|c: char| c.is_ascii_digit()) {
        format!("_{upper}")
    } else {
        upper
    }
}

/// The client's name as an upstream name: letters, digits, `-` and `_`, starting with a
/// letter, at most 28 characters (room for a suffix that tells two apart).
pub fn upstream_name(client_name: &str) -> String {
    let mut name: String = client_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        name.insert_str(0, "mcp-");
    }
    name.truncate(28);
    name
}
