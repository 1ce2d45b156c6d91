//! The client files `portcullis import` reads, as they are written: the JSON shapes
//! (`mcpServers` of Claude Desktop, Cursor, Windsurf and `.mcp.json`; Claude Code's per-project
//! `projects.PATH.mcpServers`; VS Code's `servers` with `inputs`, also under `mcp` in its user
//! settings, which may hold comments and trailing commas) and Codex's TOML
//! (`[mcp_servers.NAME]`). Nothing is resolved here.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// One server as a client's file declares it.
#[derive(Default)]
pub(crate) struct ClientServer {
    /// The client's name for it.
    pub name: String,
    /// Where in the file it is (`mcpServers.github`), for messages.
    pub place: String,
    pub command: Option<String>,
    pub args: Vec<String>,
    /// In file order; values are secrets until shown otherwise, so never in a message.
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    pub url: Option<String>,
    /// `type` as written (`stdio`, `http`, `sse`, `streamable-http`).
    pub transport: Option<String>,
    pub headers: Vec<(String, HeaderValue)>,
    /// The project a Claude Code entry belongs to: its `${workspaceFolder}`.
    pub workspace: Option<String>,
    /// Keys Portcullis has no place for, named in the report.
    pub ignored: Vec<String>,
    /// Why the entry cannot be read at all (a value of the wrong type).
    pub unreadable: Option<String>,
    pub disabled: bool,
}

/// A header as a client gives it: a value written in the file (a secret), or the variable
/// the client reads it from (Codex's `env_http_headers`, `bearer_token_env_var`).
pub(crate) enum HeaderValue {
    Written(String),
    FromEnv { variable: String, prefix: String },
}

/// A VS Code input (`${input:ID}`): what the editor asks the person for.
pub(crate) struct Input {
    pub description: String,
}

#[derive(Default)]
pub(crate) struct ClientFile {
    pub servers: Vec<ClientServer>,
    pub inputs: BTreeMap<String, Input>,
}

/// Reads one client file: Codex's TOML when `toml`, else JSON (with comments allowed).
/// Errors name the place, never a value. Servers, their variables and headers come in name
/// order whatever the file's order (or the JSON library's), so the output is stable.
pub(crate) fn read(text: &str, toml: bool) -> Result<ClientFile, String> {
    let mut file = if toml { codex(text)? } else { json(text)? };
    file.servers.sort_by(|a, b| a.place.cmp(&b.place));
    for server in &mut file.servers {
        server.env.sort();
        server.headers.sort_by(|a, b| a.0.cmp(&b.0));
        server.ignored.sort();
    }
    Ok(file)
}

fn json(text: &str) -> Result<ClientFile, String> {
    let value: Value = serde_json::from_str(&without_comments(text)).map_err(|error| {
        format!(
            "it is not JSON (line {}, column {})",
            error.line(),
            error.column()
        )
    })?;
    let Value::Object(root) = value else {
        return Err("it is not a JSON object".to_owned());
    };
    let mut file = ClientFile::default();
    servers_of(&root, "mcpServers", None, &mut file);
    servers_of(&root, "servers", None, &mut file);
    inputs_of(&root, &mut file);
    if let Some(Value::Object(mcp)) = root.get("mcp") {
        servers_of(mcp, "servers", None, &mut file);
        inputs_of(mcp, &mut file);
    }
    if let Some(Value::Object(projects)) = root.get("projects") {
        for (project, entry) in projects {
            if let Value::Object(entry) = entry {
                servers_of(entry, "mcpServers", Some(project), &mut file);
            }
        }
    }
    Ok(file)
}

fn servers_of(
    object: &Map<String, Value>,
    key: &str,
    project: Option<&String>,
    file: &mut ClientFile,
) {
    let Some(Value::Object(servers)) = object.get(key) else {
        return;
    };
    for (name, entry) in servers {
        let place = match project {
            Some(project) => format!("projects.{project}.{key}.{name}"),
            None => format!("{key}.{name}"),
        };
        let mut server = ClientServer {
            name: name.clone(),
            place,
            workspace: project.cloned(),
            ..ClientServer::default()
        };
        match entry {
            Value::Object(entry) => json_server(entry, &mut server),
            _ => server.unreadable = Some("it is not an object".to_owned()),
        }
        file.servers.push(server);
    }
}

fn json_server(entry: &Map<String, Value>, server: &mut ClientServer) {
    let mut wrong = Vec::new();
    for (key, value) in entry {
        let string = || value.as_str().map(str::to_owned);
        match key.as_str() {
            "command" => server.command = string(),
            "args" => {
                server.args = strings(value).unwrap_or_else(|| {
                    wrong.push("args");
                    Vec::new()
                })
            }
            "env" => {
                server.env = string_map(value).unwrap_or_else(|| {
                    wrong.push("env");
                    Vec::new()
                })
            }
            "cwd" => server.cwd = string(),
            "url" | "serverUrl" => server.url = string(),
            "type" | "transport" => server.transport = string(),
            "headers" => {
                server.headers = string_map(value)
                    .unwrap_or_else(|| {
                        wrong.push("headers");
                        Vec::new()
                    })
                    .into_iter()
                    .map(|(name, value)| (name, HeaderValue::Written(value)))
                    .collect();
            }
            "disabled" => server.disabled = value.as_bool().unwrap_or(false),
            _ => server.ignored.push(key.clone()),
        }
        if ["command", "cwd", "url", "serverUrl", "type", "transport"].contains(&key.as_str())
            && !value.is_string()
        {
            wrong.push(key.as_str());
        }
    }
    if !wrong.is_empty() {
        server.unreadable = Some(format!(
            "`{}` is not of the type clients read",
            wrong.join("`, `")
        ));
    }
}

fn strings(value: &Value) -> Option<Vec<String>> {
    value
        .as_array()?
        .iter()
        .map(|v| v.as_str().map(str::to_owned))
        .collect()
}

fn string_map(value: &Value) -> Option<Vec<(String, String)>> {
    value
        .as_object()?
        .iter()
        .map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
        .collect()
}

fn inputs_of(object: &Map<String, Value>, file: &mut ClientFile) {
    let Some(Value::Array(inputs)) = object.get("inputs") else {
        return;
    };
    for input in inputs {
        let text = |key: &str| input.get(key).and_then(Value::as_str);
        if let Some(id) = text("id") {
            file.inputs.insert(
                id.to_owned(),
                Input {
                    description: text("description").unwrap_or("").to_owned(),
                },
            );
        }
    }
}

/// Codex's `~/.codex/config.toml`: `[mcp_servers.NAME]` with `command`, `args`, `env`, `cwd`,
/// or `url` with `bearer_token_env_var`, `http_headers` and `env_http_headers`.
fn codex(text: &str) -> Result<ClientFile, String> {
    // `message()` alone: the error's full text quotes the line, which may hold a secret.
    let root: toml::Table = toml::from_str(text).map_err(|error| {
        let line = error
            .span()
            .map(|span| text.get(..span.start).unwrap_or("").lines().count().max(1));
        match line {
            Some(line) => format!("it is not TOML (line {line}: {})", error.message()),
            None => format!("it is not TOML ({})", error.message()),
        }
    })?;
    let mut file = ClientFile::default();
    let Some(toml::Value::Table(servers)) = root.get("mcp_servers") else {
        return Ok(file);
    };
    for (name, entry) in servers {
        let mut server = ClientServer {
            name: name.clone(),
            place: format!("mcp_servers.{name}"),
            ..ClientServer::default()
        };
        match entry {
            toml::Value::Table(entry) => codex_server(entry, &mut server),
            _ => server.unreadable = Some("it is not a table".to_owned()),
        }
        file.servers.push(server);
    }
    Ok(file)
}

fn codex_server(entry: &toml::Table, server: &mut ClientServer) {
    let mut wrong = Vec::new();
    let table = |value: &toml::Value| -> Option<Vec<(String, String)>> {
        value
            .as_table()?
            .iter()
            .map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
            .collect()
    };
    for (key, value) in entry {
        let string = value.as_str().map(str::to_owned);
        let ok = match key.as_str() {
            "command" => {
                server.command = string;
                server.command.is_some()
            }
            "args" => value
                .as_array()
                .and_then(|args| args.iter().map(|a| a.as_str().map(str::to_owned)).collect())
                .map(|args| server.args = args)
                .is_some(),
            "env" => table(value).map(|env| server.env = env).is_some(),
            "cwd" => {
                server.cwd = string;
                server.cwd.is_some()
            }
            "url" => {
                server.url = string;
                server.url.is_some()
            }
            "bearer_token_env_var" => string
                .map(|variable| {
                    server.headers.push((
                        "Authorization".to_owned(),
                        HeaderValue::FromEnv {
                            variable,
                            prefix: "Bearer ".to_owned(),
                        },
                    ));
                })
                .is_some(),
            "http_headers" => table(value)
                .map(|headers| {
                    server.headers.extend(
                        headers
                            .into_iter()
                            .map(|(name, value)| (name, HeaderValue::Written(value))),
                    );
                })
                .is_some(),
            "env_http_headers" => table(value)
                .map(|headers| {
                    server
                        .headers
                        .extend(headers.into_iter().map(|(name, variable)| {
                            (
                                name,
                                HeaderValue::FromEnv {
                                    variable,
                                    prefix: String::new(),
                                },
                            )
                        }));
                })
                .is_some(),
            "enabled" => {
                server.disabled = value.as_bool() == Some(false);
                true
            }
            _ => {
                server.ignored.push(key.clone());
                true
            }
        };
        if !ok {
            wrong.push(key.as_str());
        }
    }
    if !wrong.is_empty() {
        server.unreadable = Some(format!(
            "`{}` is not of the type Codex reads",
            wrong.join("`, `")
        ));
    }
}

/// JSON with comments (VS Code's settings): `//` and `/* */` comments and trailing commas
/// removed outside strings, so that serde_json reads it. Offsets of lines are kept.
fn without_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                '\\' => out.extend(chars.next()),
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match (c, chars.peek()) {
            ('"', _) => {
                in_string = true;
                out.push(c);
            }
            ('/', Some('/')) => {
                for skipped in chars.by_ref() {
                    if skipped == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            ('/', Some('*')) => {
                chars.next();
                let mut last = ' ';
                for skipped in chars.by_ref() {
                    if skipped == '\n' {
                        out.push('\n');
                    }
                    if last == '*' && skipped == '/' {
                        break;
                    }
                    last = skipped;
                }
            }
            (',', _) => {
                // A comma followed (past blanks) by a closing bracket is a trailing comma.
                let next = chars.clone().find(|c| !c.is_whitespace());
                if !matches!(next, Some('}' | ']')) {
                    out.push(c);
                }
            }
            _ => out.push(c),
        }
    }
    out
}
