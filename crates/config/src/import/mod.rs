//! `portcullis import`: MCP client configurations (Claude Desktop, Claude Code, Cursor, VS
//! Code, Windsurf, Codex) turned into a Portcullis configuration, one `[[upstream]]` per
//! server. Pure like the rest of the crate: the caller finds and reads the files, and says
//! what the machine holds (home, environment, which paths are directories).
//!
//! Key design decision: every upstream written is first parsed by this crate's own
//! [`crate::parse`]; one it refuses is reported with the reason and left out, so the written
//! file passes `portcullis check`'s config stage. INVARIANT: no value of a client's `env` or
//! headers is written, shown or put in a message unless it is plainly no secret; the rest
//! become named variables the report lists.

mod clients;
mod convert;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

pub use convert::upstream_name;
use convert::{Context, Planned, PlannedTransport, convert};

/// One client file to import.
pub struct ImportSource {
    /// The client it belongs to (`claude-desktop`, ..., or `file`), for messages.
    pub client: String,
    pub path: PathBuf,
    pub text: String,
    /// What `${workspaceFolder}` is in it, when it belongs to a workspace.
    pub workspace: Option<PathBuf>,
}

/// What the import may know of the machine.
pub struct Machine<'a> {
    /// `${userHome}`.
    pub home: &'a Path,
    /// `${env:NAME}` in commands and URLs (never in `env` or headers, which become variables).
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// Which absolute arguments are directories (proposed as roots).
    pub is_dir: &'a dyn Fn(&Path) -> bool,
}

/// The result: the configuration's text and what the person must know about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The Portcullis configuration (TOML). Empty of secrets.
    pub config: String,
    /// The upstreams written, by name, with the client entry each came from.
    pub upstreams: Vec<(String, String)>,
    /// The variables to set before `serve`, in name order.
    pub variables: Vec<Variable>,
    /// Entries not written, with why.
    pub skipped: Vec<Skipped>,
    /// Everything else worth reading: keys not imported, choices made.
    pub notes: Vec<String>,
}

/// A variable an imported upstream reads its secret from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    pub name: String,
    /// The upstreams that read it.
    pub upstreams: Vec<String>,
    /// Where its value is today.
    pub origins: Vec<String>,
}

/// A client entry that was not imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// `claude-desktop FILE: mcpServers.NAME`, or the file alone when it could not be read.
    pub entry: String,
    pub reason: String,
}

/// Imports every server of every source; see the module's documentation.
pub fn import(sources: &[ImportSource], machine: &Machine<'_>) -> Imported {
    let mut imported = Imported {
        config: String::new(),
        upstreams: Vec::new(),
        variables: Vec::new(),
        skipped: Vec::new(),
        notes: Vec::new(),
    };
    let mut blocks = Vec::new();
    let mut names = BTreeSet::new();
    let mut variables: BTreeMap<String, VariableUse> = BTreeMap::new();
    for source in sources {
        let file_label = format!("{} {}", source.client, source.path.display());
        let toml = source.path.extension().is_some_and(|e| e == "toml");
        let file = match clients::read(&source.text, toml) {
            Ok(file) => file,
            Err(reason) => {
                imported.skipped.push(Skipped {
                    entry: file_label,
                    reason,
                });
                continue;
            }
        };
        if file.servers.is_empty() {
            imported
                .notes
                .push(format!("{file_label}: no MCP servers in it"));
        }
        let context = Context {
            home: machine.home,
            workspace: source.workspace.as_deref(),
            env: machine.env,
            is_dir: machine.is_dir,
            inputs: &file.inputs,
        };
        for server in &file.servers {
            let entry = format!("{file_label}: {}", server.place);
            let name = unique(upstream_name(&server.name), &names);
            let planned = convert(server, &name, &context).and_then(|planned| {
                let block = render(&name, &entry, &planned);
                // INVARIANT: only what the config accepts is written.
                crate::parse(Path::new("imported.toml"), &block)
                    .map(|_| (planned, block))
                    .map_err(|errors| {
                        errors
                            .0
                            .iter()
                            .map(|error| error.message.clone())
                            .collect::<Vec<_>>()
                            .join("; ")
                    })
            });
            match planned {
                Ok((planned, block)) => {
                    for note in &planned.notes {
                        imported.notes.push(format!("`{name}` ({entry}): {note}"));
                    }
                    for secret in planned.secrets {
                        let usage = variables.entry(secret.variable).or_default();
                        usage.upstreams.push(name.clone());
                        if !usage.origins.contains(&secret.origin) {
                            usage.origins.push(secret.origin);
                        }
                        usage.written.extend(secret.written);
                    }
                    names.insert(name.clone());
                    imported.upstreams.push((name, entry));
                    blocks.push(block);
                }
                Err(reason) => imported.skipped.push(Skipped { entry, reason }),
            }
        }
    }
    for (name, usage) in variables {
        if usage.written.len() > 1 {
            imported.notes.push(format!(
                "`{name}` has different values in the client's files (for {}); Portcullis passes one variable of that name to all of them: set the one they should share, or edit the config",
                usage.upstreams.join(", ")
            ));
        }
        imported.variables.push(Variable {
            name,
            upstreams: usage.upstreams,
            origins: usage.origins,
        });
    }
    imported.config = document(sources, &blocks);
    imported
}

/// The upstreams that read one variable, and the distinct values written for it.
#[derive(Default)]
struct VariableUse {
    upstreams: Vec<String>,
    origins: Vec<String>,
    written: BTreeSet<String>,
}

/// `name`, or `name-2`, `name-3`, ... when an upstream already has it.
fn unique(name: String, taken: &BTreeSet<String>) -> String {
    if !taken.contains(&name) {
        return name;
    }
    (2..)
        .map(|n| format!("{name}-{n}"))
        .find(|candidate| !taken.contains(candidate))
        .unwrap_or(name)
}

fn document(sources: &[ImportSource], blocks: &[String]) -> String {
    let mut text = String::from("# Written by `portcullis import` from:\n");
    for source in sources {
        let _ = writeln!(text, "#   {} {}", source.client, source.path.display());
    }
    text.push_str(
        "#\n\
         # Review it before use. Secrets are not in this file: each upstream reads them from the\n\
         # variables in its `inherit_env` or `headers`, set in Portcullis's environment or stored\n\
         # with `portcullis secret set --config FILE NAME`.\n\
         #\n\
         # Tools are unclassified: every tool counts as a side effect, so the shipped policy asks\n\
         # you to approve each call until you classify them, e.g. under an upstream:\n\
         #   tools.read_file = { effect = \"read\" }\n\
         # `roots` were proposed from the directories each server was given: review them.\n",
    );
    for block in blocks {
        text.push('\n');
        text.push_str(block);
    }
    text
}

/// One `[[upstream]]` table.
fn render(name: &str, entry: &str, planned: &Planned) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "# from {entry}");
    let _ = writeln!(text, "[[upstream]]");
    let _ = writeln!(text, "name = {}", quoted(name));
    match &planned.transport {
        PlannedTransport::Stdio {
            command,
            cwd,
            env,
            inherit_env,
            roots,
        } => {
            let _ = writeln!(text, "command = {}", list(command));
            if let Some(cwd) = cwd {
                let _ = writeln!(text, "cwd = {}", quoted(cwd));
            }
            if !roots.is_empty() {
                let _ = writeln!(
                    text,
                    "roots = {}   # proposed from its directory arguments: review",
                    list(roots)
                );
            }
            if !env.is_empty() {
                let pairs: Vec<String> = env
                    .iter()
                    .map(|(key, value)| format!("{key} = {}", quoted(value)))
                    .collect();
                let _ = writeln!(text, "env = {{ {} }}", pairs.join(", "));
            }
            if !inherit_env.is_empty() {
                let _ = writeln!(text, "inherit_env = {}", list(inherit_env));
            }
        }
        PlannedTransport::Remote { url, headers } => {
            let _ = writeln!(text, "url = {}", quoted(url));
            if !headers.is_empty() {
                let pairs: Vec<String> = headers
                    .iter()
                    .map(|(header, variable, prefix)| {
                        let prefix = if prefix.is_empty() {
                            String::new()
                        } else {
                            format!(", prefix = {}", quoted(prefix))
                        };
                        format!("{} = {{ env = {}{prefix} }}", key(header), quoted(variable))
                    })
                    .collect();
                let _ = writeln!(text, "headers = {{ {} }}", pairs.join(", "));
            }
        }
    }
    text
}

fn quoted(value: &str) -> String {
    toml::Value::String(value.to_owned()).to_string()
}

fn list(values: &[String]) -> String {
    let items: Vec<String> = values.iter().map(|v| quoted(v)).collect();
    format!("[{}]", items.join(", "))
}

/// A bare key when TOML allows one, else quoted.
fn key(name: &str) -> String {
    if !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        name.to_owned()
    } else {
        quoted(name)
    }
}

#[cfg(test)]
mod tests;
