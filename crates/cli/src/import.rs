//! `portcullis import`: finds MCP clients' configuration files in their usual places (or
//! takes the files given), has `portcullis_config::import` turn them into a Portcullis
//! configuration, prints it and what to do next, and with `--write` writes it atomically,
//! never over an existing file unless `--force`.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use portcullis_config::import::{ImportSource, Imported, Machine, import};

/// The clients `--from` names, and where each keeps its MCP servers (Linux, then macOS).
/// `~` is the home directory, `.` the workspace (`--workspace`, default the current
/// directory).
pub(crate) const CLIENTS: &[(&str, &[&str])] = &[
    (
        "claude-desktop",
        &[
            "~/.config/Claude/claude_desktop_config.json",
            "~/Library/Application Support/Claude/claude_desktop_config.json",
        ],
    ),
    ("claude-code", &["~/.claude.json", "./.mcp.json"]),
    ("cursor", &["~/.cursor/mcp.json", "./.cursor/mcp.json"]),
    (
        "vscode",
        &[
            "./.vscode/mcp.json",
            "~/.config/Code/User/mcp.json",
            "~/.config/Code/User/settings.json",
            "~/Library/Application Support/Code/User/mcp.json",
            "~/Library/Application Support/Code/User/settings.json",
        ],
    ),
    ("windsurf", &["~/.codeium/windsurf/mcp_config.json"]),
    ("codex", &["~/.codex/config.toml"]),
];

/// `import --help`'s list of where each client keeps its servers.
pub(crate) fn places_help() -> String {
    let mut text =
        String::from("Where each client keeps its MCP servers (~ is $HOME, . the workspace):");
    for (client, places) in CLIENTS {
        text.push_str(&format!("\n  {client:<15} {}", places.join(", ")));
    }
    text
}

/// What `import` was asked.
pub(crate) struct Request {
    /// Client names or files; empty: every client found.
    pub from: Vec<String>,
    pub workspace: Option<PathBuf>,
    /// `None`: a dry run. `Some(None)`: the default path.
    pub write: Option<Option<PathBuf>>,
    pub force: bool,
}

pub(crate) fn run(request: &Request) -> anyhow::Result<()> {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .filter(|home| home.is_absolute())
        .context(
            "`HOME` is not set to an absolute path; it is where clients keep their configuration",
        )?;
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let workspace = match &request.workspace {
        Some(dir) => std::path::absolute(dir)
            .with_context(|| format!("cannot resolve `{}`", dir.display()))?,
        None => cwd.clone(),
    };
    let sources = sources(&request.from, &home, &workspace, &cwd)?;
    let env = |name: &str| std::env::var(name).ok();
    let is_dir = |path: &Path| path.is_dir();
    let imported = import(
        &sources,
        &Machine {
            home: &home,
            env: &env,
            is_dir: &is_dir,
        },
    );
    let target = match &request.write {
        None => None,
        Some(Some(path)) => Some(path.clone()),
        Some(None) => Some(default_path(&home)),
    };
    match &target {
        None => print!("{}", imported.config),
        Some(path) if imported.upstreams.is_empty() => {
            summary(&imported, path);
            bail!(
                "nothing was imported, so `{}` was not written",
                path.display()
            );
        }
        Some(path) => write(path, &imported.config, request.force)?,
    }
    summary(&imported, target.as_deref().unwrap_or(Path::new("FILE")));
    if target.is_none() {
        eprintln!(
            "portcullis: dry run: nothing was written; `--write [PATH]` writes it (default `{}`)",
            default_path(&home).display()
        );
    }
    if imported.upstreams.is_empty() {
        bail!("no server could be imported");
    }
    Ok(())
}

/// `$XDG_CONFIG_HOME/portcullis/portcullis.toml`, else `~/.config/portcullis/portcullis.toml`.
pub(crate) fn default_path(home: &Path) -> PathBuf {
    std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute())
        .unwrap_or_else(|| home.join(".config"))
        .join("portcullis/portcullis.toml")
}

/// The files to read: each named client's files that exist (at least one), or each file
/// given; with nothing named, every client's files that exist.
fn sources(
    from: &[String],
    home: &Path,
    workspace: &Path,
    cwd: &Path,
) -> anyhow::Result<Vec<ImportSource>> {
    let mut sources = Vec::new();
    let named: Vec<&str> = if from.is_empty() {
        CLIENTS.iter().map(|(client, _)| *client).collect()
    } else {
        from.iter().map(String::as_str).collect()
    };
    for name in named {
        let Some((client, places)) = CLIENTS.iter().find(|(client, _)| *client == name) else {
            let path = cwd.join(name);
            if !path.is_file() {
                bail!(
                    "`{name}` is neither a client ({}) nor a file",
                    CLIENTS
                        .iter()
                        .map(|(client, _)| *client)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            sources.push(source("file", path, Some(workspace))?);
            continue;
        };
        let mut found = false;
        for place in *places {
            let (path, in_workspace) = match (place.strip_prefix("~/"), place.strip_prefix("./")) {
                (Some(rest), _) => (home.join(rest), false),
                (_, Some(rest)) => (workspace.join(rest), true),
                _ => continue,
            };
            if path.is_file() {
                found = true;
                sources.push(source(client, path, in_workspace.then_some(workspace))?);
            }
        }
        if !found && !from.is_empty() {
            bail!(
                "no {client} configuration was found; looked in {}",
                places.join(", ")
            );
        }
    }
    if sources.is_empty() {
        bail!("no client configuration was found; name a file with `--from FILE`");
    }
    Ok(sources)
}

fn source(client: &str, path: PathBuf, workspace: Option<&Path>) -> anyhow::Result<ImportSource> {
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    Ok(ImportSource {
        client: client.to_owned(),
        path,
        text,
        workspace: workspace.map(Path::to_path_buf),
    })
}

/// What was imported, what was not and why, and which variables to set, on stderr.
fn summary(imported: &Imported, path: &Path) {
    eprintln!(
        "portcullis: {} upstream{} imported:",
        imported.upstreams.len(),
        if imported.upstreams.len() == 1 {
            ""
        } else {
            "s"
        }
    );
    for (name, entry) in &imported.upstreams {
        eprintln!("  {name}  ({entry})");
    }
    if !imported.skipped.is_empty() {
        eprintln!("portcullis: not imported:");
        for skipped in &imported.skipped {
            eprintln!("  {}: {}", skipped.entry, skipped.reason);
        }
    }
    if !imported.notes.is_empty() {
        eprintln!("portcullis: notes:");
        for note in &imported.notes {
            eprintln!("  {note}");
        }
    }
    if !imported.variables.is_empty() {
        eprintln!(
            "portcullis: secrets were not copied; set each of these in Portcullis's environment, or store it encrypted with `portcullis secret set --config {} NAME` (reads the value from stdin; needs `PORTCULLIS_CREDENTIAL_KEY`):",
            path.display()
        );
        for variable in &imported.variables {
            eprintln!(
                "  {}  for {}: {}",
                variable.name,
                variable.upstreams.join(", "),
                variable.origins.join("; ")
            );
        }
    }
    eprintln!(
        "portcullis: next: `portcullis prepare --config {0}` (installs npx/uvx packages), then `portcullis check --config {0}`",
        path.display()
    );
}

/// Writes `text` to `path` whole or not at all: a new file beside it (0600, fsynced), then
/// linked into place (which fails if `path` exists) or, with `force`, renamed over it.
pub(crate) fn write(path: &Path, text: &str, force: bool) -> anyhow::Result<()> {
    if !force && path.exists() {
        bail!(
            "`{}` exists; `--force` replaces it, or give another path to `--write`",
            path.display()
        );
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    let file_name = path
        .file_name()
        .with_context(|| format!("`{}` does not name a file", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut file| {
            file.write_all(text.as_bytes())?;
            file.sync_all()
        });
    let placed = written.and_then(|()| {
        if force {
            std::fs::rename(&tmp, path)
        } else {
            std::fs::hard_link(&tmp, path).and_then(|()| std::fs::remove_file(&tmp))
        }
    });
    if let Err(error) = placed {
        let _ = std::fs::remove_file(&tmp);
        if error.kind() == std::io::ErrorKind::AlreadyExists {
            bail!(
                "`{}` exists; `--force` replaces it, or give another path to `--write`",
                path.display()
            );
        }
        return Err(error).with_context(|| format!("cannot write `{}`", path.display()));
    }
    if let Ok(dir) = std::fs::File::open(&dir) {
        let _ = dir.sync_all();
    }
    eprintln!("portcullis: wrote `{}`", path.display());
    Ok(())
}
