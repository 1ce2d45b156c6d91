//! `portcullis install` and `uninstall`: the one Portcullis entry put into (or taken out of) an
//! MCP client's configuration, every other key kept, written whole (a new file renamed over the
//! old one) after a backup of the old one; nothing is written when nothing changes. With
//! `--replace`, the client's servers that the Portcullis configuration imported leave the
//! client's file: they are reached through Portcullis now (the backup keeps them).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use portcullis_config::import::upstream_name;
use serde_json::{Map, Value};

use crate::import::CLIENTS;

/// The name of Portcullis's entry in a client's servers.
const ENTRY: &str = "portcullis";

/// What `install` or `uninstall` was asked.
pub(crate) struct Request {
    pub client: String,
    /// The client's file, instead of its usual place.
    pub file: Option<PathBuf>,
    /// `install`: the Portcullis configuration the entry serves, and its upstreams' names.
    pub config: Option<(PathBuf, Vec<String>)>,
    /// `install --replace`: the servers imported into the configuration leave the client.
    pub replace: bool,
}

/// How a client's file holds its servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// JSON `mcpServers` (Claude Desktop, Claude Code, Cursor, Windsurf).
    McpServers,
    /// VS Code's `mcp.json`: `servers`, each with a `type`.
    VsCode,
    /// VS Code's `settings.json`: `mcp.servers`.
    VsCodeSettings,
    /// Codex's TOML: `[mcp_servers.NAME]`.
    Codex,
}

pub(crate) fn install(request: &Request) -> anyhow::Result<()> {
    let Some((config, upstreams)) = &request.config else {
        bail!("install needs the configuration the client is to serve");
    };
    let (path, shape) = client_file(&request.client, request.file.as_deref())?;
    let program = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .context("cannot tell where this portcullis program is")?;
    let config = std::fs::canonicalize(config)
        .with_context(|| format!("cannot find the configuration `{}`", config.display()))?;
    let args = ["serve", "--config", &config.display().to_string()].map(str::to_owned);
    let before = read(&path)?;
    let (after, moved) = match shape {
        Shape::Codex => codex_install(&before, &program, &args, request.replace, upstreams)?,
        _ => json_install(&before, shape, &program, &args, request.replace, upstreams)?,
    };
    if !moved.is_empty() {
        eprintln!(
            "portcullis: moved out of the client (now reached through Portcullis): {}",
            moved.join(", ")
        );
    }
    save(&path, &before, &after, &request.client)?;
    if !moved.is_empty() {
        eprintln!(
            "portcullis: the backup beside `{}` is the client's file as it was, with the values of its `env` and `headers` in the clear (mode 0600): delete it once Portcullis serves these servers (their secrets are in Portcullis's encrypted store once `secret set` stored them)",
            path.display()
        );
    }
    Ok(())
}

pub(crate) fn uninstall(request: &Request) -> anyhow::Result<()> {
    let (path, shape) = client_file(&request.client, request.file.as_deref())?;
    let before = read(&path)?;
    let after = match shape {
        Shape::Codex => {
            let mut document = codex_document(&before, &path)?;
            if let Some(servers) = document
                .get_mut("mcp_servers")
                .and_then(toml_edit::Item::as_table_like_mut)
            {
                servers.remove(ENTRY);
            }
            document.to_string()
        }
        _ => {
            let mut document = json_document(&before, &path)?;
            if let Some(servers) = servers(&mut document, shape, false)? {
                servers.remove(ENTRY);
            }
            json_text(&document)?
        }
    };
    if after == before {
        eprintln!(
            "portcullis: `{}` has no Portcullis entry; nothing written",
            path.display()
        );
        return Ok(());
    }
    save(&path, &before, &after, &request.client)?;
    eprintln!(
        "portcullis: servers an earlier `install --replace` moved out are in its backup beside the file"
    );
    Ok(())
}

/// The client's file and its shape: `file` if given, else the first of the client's usual
/// places that exists, else the first in the home directory (to be made).
fn client_file(client: &str, file: Option<&Path>) -> anyhow::Result<(PathBuf, Shape)> {
    let Some((_, places)) = CLIENTS.iter().find(|(name, _)| *name == client) else {
        bail!(
            "unknown client `{client}`; one of {}",
            CLIENTS
                .iter()
                .map(|(name, _)| *name)
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    let path = match file {
        Some(file) => file.to_path_buf(),
        None => {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|home| home.is_absolute())
                .context("`HOME` is not set to an absolute path")?;
            let cwd = std::env::current_dir().context("cannot read the current directory")?;
            let candidates: Vec<PathBuf> = places
                .iter()
                .filter_map(
                    |place| match (place.strip_prefix("~/"), place.strip_prefix("./")) {
                        (Some(rest), _) => Some(home.join(rest)),
                        (_, Some(rest)) => Some(cwd.join(rest)),
                        _ => None,
                    },
                )
                .collect();
            let at_home = places
                .iter()
                .position(|place| place.starts_with("~/"))
                .and_then(|at| candidates.get(at).cloned());
            candidates
                .iter()
                .find(|path| path.is_file())
                .cloned()
                .or(at_home)
                .with_context(|| format!("no usual place for `{client}`; give `--file`"))?
        }
    };
    let shape = match client {
        "codex" => Shape::Codex,
        "vscode" if path.file_name().is_some_and(|name| name == "settings.json") => {
            Shape::VsCodeSettings
        }
        "vscode" => Shape::VsCode,
        _ => Shape::McpServers,
    };
    Ok((path, shape))
}

/// The file's text; empty when it does not exist yet.
fn read(path: &Path) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(error) => Err(error).with_context(|| format!("cannot read `{}`", path.display())),
    }
}

fn json_document(text: &str, path: &Path) -> anyhow::Result<Value> {
    if text.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_str(text).with_context(|| {
        format!(
            "`{}` is not plain JSON (comments?), and portcullis does not rewrite what it cannot keep whole; add the entry by hand",
            path.display()
        )
    })
}

fn json_text(document: &Value) -> anyhow::Result<String> {
    let mut text = serde_json::to_string_pretty(document)?;
    text.push('\n');
    Ok(text)
}

/// The client's table of servers in `document`, made if `make`; `None` if absent.
fn servers(
    document: &mut Value,
    shape: Shape,
    make: bool,
) -> anyhow::Result<Option<&mut Map<String, Value>>> {
    let path: &[&str] = match shape {
        Shape::McpServers => &["mcpServers"],
        Shape::VsCode => &["servers"],
        Shape::VsCodeSettings => &["mcp", "servers"],
        Shape::Codex => bail!("a Codex file is TOML"),
    };
    let mut here = document;
    for key in path {
        let Value::Object(members) = here else {
            bail!("the client's file is not a JSON object where `{key}` should be");
        };
        if !members.contains_key(*key) {
            if !make {
                return Ok(None);
            }
            members.insert((*key).to_owned(), Value::Object(Map::new()));
        }
        here = members.get_mut(*key).context("the key was just made")?;
    }
    match here {
        Value::Object(servers) => Ok(Some(servers)),
        _ => bail!("the client's `{}` is not a JSON object", path.join(".")),
    }
}

/// The JSON client file with Portcullis's entry, and the servers `replace` moved out.
fn json_install(
    before: &str,
    shape: Shape,
    program: &Path,
    args: &[String],
    replace: bool,
    upstreams: &[String],
) -> anyhow::Result<(String, Vec<String>)> {
    let mut document = json_document(before, Path::new("the client's file"))?;
    let servers = servers(&mut document, shape, true)?.context("the servers table was made")?;
    let mut entry = Map::new();
    if shape != Shape::McpServers {
        entry.insert("type".to_owned(), Value::String("stdio".to_owned()));
    }
    entry.insert(
        "command".to_owned(),
        Value::String(program.display().to_string()),
    );
    entry.insert(
        "args".to_owned(),
        Value::Array(args.iter().cloned().map(Value::String).collect()),
    );
    servers.insert(ENTRY.to_owned(), Value::Object(entry));
    let moved = if replace {
        let imported = imported(servers.keys().map(String::as_str), upstreams);
        for name in &imported {
            servers.remove(name);
        }
        imported
    } else {
        Vec::new()
    };
    Ok((json_text(&document)?, moved))
}

fn codex_document(text: &str, path: &Path) -> anyhow::Result<toml_edit::DocumentMut> {
    text.parse()
        .with_context(|| format!("`{}` is not valid TOML", path.display()))
}

/// Codex's TOML with Portcullis's entry (comments and order kept), and what `replace` moved.
fn codex_install(
    before: &str,
    program: &Path,
    args: &[String],
    replace: bool,
    upstreams: &[String],
) -> anyhow::Result<(String, Vec<String>)> {
    let mut document = codex_document(before, Path::new("the Codex configuration"))?;
    let servers = document
        .entry("mcp_servers")
        .or_insert_with(|| {
            let mut table = toml_edit::Table::new();
            table.set_implicit(true);
            toml_edit::Item::Table(table)
        })
        .as_table_like_mut()
        .context("the Codex configuration's `mcp_servers` is not a table")?;
    let mut entry = toml_edit::Table::new();
    entry.insert("command", toml_edit::value(program.display().to_string()));
    entry.insert(
        "args",
        toml_edit::value(args.iter().collect::<toml_edit::Array>()),
    );
    let unchanged = servers
        .get(ENTRY)
        .and_then(toml_edit::Item::as_table_like)
        .is_some_and(|existing| {
            existing.get("command").and_then(toml_edit::Item::as_str)
                == Some(&program.display().to_string())
                && existing
                    .get("args")
                    .and_then(toml_edit::Item::as_array)
                    .is_some_and(|old| {
                        old.iter().map(toml_edit::Value::as_str).collect::<Vec<_>>()
                            == args
                                .iter()
                                .map(|arg| Some(arg.as_str()))
                                .collect::<Vec<_>>()
                    })
        });
    if !unchanged {
        servers.insert(ENTRY, toml_edit::Item::Table(entry));
    }
    let moved = if replace {
        let imported = imported(servers.iter().map(|(name, _)| name), upstreams);
        for name in &imported {
            servers.remove(name);
        }
        imported
    } else {
        Vec::new()
    };
    Ok((document.to_string(), moved))
}

/// The client's servers (by `names`) that the configuration imported: those whose `import`
/// upstream name is one of `upstreams`.
fn imported<'a>(names: impl Iterator<Item = &'a str>, upstreams: &[String]) -> Vec<String> {
    names
        .filter(|name| *name != ENTRY && upstreams.contains(&upstream_name(name)))
        .map(str::to_owned)
        .collect()
}

/// Writes `after` over `path` whole, after a backup of `before` beside it; nothing when they
/// are the same.
fn save(path: &Path, before: &str, after: &str, client: &str) -> anyhow::Result<()> {
    if before == after {
        eprintln!(
            "portcullis: `{}` already has this Portcullis entry; nothing written",
            path.display()
        );
        return Ok(());
    }
    if !before.is_empty() {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_secs())
            .unwrap_or_default();
        // Two changes within one second (an install, then an uninstall) each keep theirs.
        let backup = (0..)
            .map(|n| match n {
                0 => PathBuf::from(format!("{}.portcullis-{stamp}.bak", path.display())),
                n => PathBuf::from(format!("{}.portcullis-{stamp}-{n}.bak", path.display())),
            })
            .find(|candidate| !candidate.exists())
            .context("no free name for the backup")?;
        crate::import::write(&backup, before, false)
            .with_context(|| format!("cannot back up `{}`; nothing written", path.display()))?;
    }
    crate::import::write(path, after, true)?;
    eprintln!("portcullis: restart {client} to use it");
    Ok(())
}

#[cfg(test)]
#[expect(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
mod tests {
    use std::path::Path;

    use serde_json::json;

    use super::{Shape, codex_install, json_install, save};

    fn args() -> Vec<String> {
        ["serve", "--config", "/home/a/p.toml"]
            .map(str::to_owned)
            .to_vec()
    }

    #[test]
    fn each_json_shape_gets_its_entry_and_keeps_the_rest() {
        let program = Path::new("/usr/bin/portcullis");
        let cases = [
            (
                Shape::McpServers,
                json!({"theme": "dark", "mcpServers": {"a": {"command": "x"}}}),
                "/mcpServers/portcullis",
                None,
            ),
            (
                Shape::VsCode,
                json!({"inputs": [], "servers": {}}),
                "/servers/portcullis",
                Some("stdio"),
            ),
            (
                Shape::VsCodeSettings,
                json!({"editor.fontSize": 12}),
                "/mcp/servers/portcullis",
                Some("stdio"),
            ),
        ];
        for (shape, before, pointer, kind) in cases {
            let (after, moved) =
                json_install(&before.to_string(), shape, program, &args(), false, &[]).unwrap();
            let after: serde_json::Value = serde_json::from_str(&after).unwrap();
            let entry = after.pointer(pointer).unwrap();
            assert_eq!(entry["command"], "/usr/bin/portcullis", "{shape:?}");
            assert_eq!(entry["args"], json!(args()), "{shape:?}");
            assert_eq!(
                entry.get("type").and_then(|t| t.as_str()),
                kind,
                "{shape:?}"
            );
            for (key, value) in before.as_object().unwrap() {
                if key != "servers" && key != "mcpServers" {
                    assert_eq!(&after[key], value, "{shape:?}: `{key}` changed");
                }
            }
            assert!(moved.is_empty());
        }
        // Imported servers leave with `replace`; others stay.
        let before =
            json!({"mcpServers": {"Git Hub": {"command": "x"}, "other": {"command": "y"}}});
        let (after, moved) = json_install(
            &before.to_string(),
            Shape::McpServers,
            program,
            &args(),
            true,
            &["git-hub".to_owned()],
        )
        .unwrap();
        assert_eq!(moved, ["Git Hub"]);
        let after: serde_json::Value = serde_json::from_str(&after).unwrap();
        assert!(after["mcpServers"].get("other").is_some());
        // A file with comments is not rewritten.
        let refused = json_install(
            "{ // mine\n \"mcpServers\": {} }",
            Shape::McpServers,
            program,
            &args(),
            false,
            &[],
        );
        assert!(refused.unwrap_err().to_string().contains("not plain JSON"));
    }

    #[test]
    fn codex_keeps_its_comments_and_an_unchanged_entry_is_not_rewritten() {
        let program = Path::new("/usr/bin/portcullis");
        let before = "# my codex settings\nmodel = \"o4\"\n\n[mcp_servers.docs]\ncommand = \"docs-server\" # keep this\n";
        let (after, _) = codex_install(before, program, &args(), false, &[]).unwrap();
        assert!(
            after.starts_with("# my codex settings\nmodel = \"o4\"\n"),
            "{after}"
        );
        assert!(
            after.contains("command = \"docs-server\" # keep this"),
            "{after}"
        );
        assert!(after.contains("[mcp_servers.portcullis]"), "{after}");
        let parsed: toml_edit::DocumentMut = after.parse().unwrap();
        assert_eq!(
            parsed["mcp_servers"]["portcullis"]["command"].as_str(),
            Some("/usr/bin/portcullis")
        );
        let (again, _) = codex_install(&after, program, &args(), false, &[]).unwrap();
        assert_eq!(again, after);
        let (replaced, moved) =
            codex_install(&after, program, &args(), true, &["docs".to_owned()]).unwrap();
        assert_eq!(moved, ["docs"]);
        assert!(!replaced.contains("docs-server"), "{replaced}");
    }

    #[test]
    fn every_change_keeps_its_own_backup_even_within_one_second() {
        let dir = std::env::temp_dir().join(format!("portcullis-install-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("mcp.json");
        std::fs::write(&file, "one").unwrap();
        save(&file, "one", "two", "test").unwrap();
        save(&file, "two", "three", "test").unwrap();
        save(&file, "three", "three", "test").unwrap();
        let mut kept: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter(|entry| entry.file_name().to_string_lossy().ends_with(".bak"))
            .map(|entry| std::fs::read_to_string(entry.path()).unwrap())
            .collect();
        kept.sort();
        assert_eq!(kept, ["one", "two"]);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "three");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
