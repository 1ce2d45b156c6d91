//! The command lines MCP servers are published with (`npx -y PACKAGE`, `uvx PACKAGE`,
//! `docker run -i IMAGE`) read as what they ask for: a package at a version, or an image.
//! Portcullis installs packages itself, outside the sandbox, and runs their entry point
//! directly, contained (see `portcullis-launch`); a container runs with the isolation
//! Portcullis sets, not the one the line asked for. Pure: nothing is resolved here.

/// What a launcher command line asks to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launcher {
    /// An npm package, as `npx` or `bunx` would run it.
    Npm(Package),
    /// A PyPI package, as `uvx` or `pipx run` would run it.
    Pypi(Package),
    /// A container image, as `docker run` or `podman run` would run it.
    Container(ContainerRun),
}

/// A registry package and how to run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// The launcher as written (`npx`, `uvx`, ...), for messages.
    pub via: String,
    pub name: String,
    /// The version asked for (exact, a range or a tag); `None` asks for the latest, which is
    /// resolved once and then kept.
    pub requested: Option<String>,
    /// The command to run from the package when it is not the package's own (`npx -p PKG CMD`,
    /// `uvx --from PKG CMD`).
    pub command: Option<String>,
    /// The server's own arguments.
    pub args: Vec<String>,
}

impl Package {
    /// The version asked for, as the lock file records it: `latest` when none was named.
    pub fn requested_or_latest(&self) -> &str {
        self.requested.as_deref().unwrap_or("latest")
    }
}

/// A container run: the image, the options kept from the line, and the server's arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRun {
    /// `docker` or `podman`, as written (a path is kept whole).
    pub engine: String,
    pub image: String,
    /// Environment options kept from the line (`-e NAME` or `-e NAME=value`), and `--workdir`,
    /// `--entrypoint`, `--init`, `--platform`: nothing that changes isolation.
    pub options: Vec<String>,
    pub args: Vec<String>,
}

/// `command` read as a launcher line; `Ok(None)` when its program is no launcher.
pub(crate) fn launcher(command: &[String]) -> Result<Option<Launcher>, String> {
    let Some((program, rest)) = command.split_first() else {
        return Ok(None);
    };
    let name = program.rsplit('/').next().unwrap_or(program);
    match name {
        "npx" | "bunx" => npm(name, rest).map(|p| Some(Launcher::Npm(p))),
        "uvx" => pypi(name, rest, "--from").map(|p| Some(Launcher::Pypi(p))),
        "pipx" => match rest.split_first() {
            Some((run, rest)) if run == "run" => {
                pypi("pipx run", rest, "--spec").map(|p| Some(Launcher::Pypi(p)))
            }
            _ => Err("`pipx` runs a server only as `pipx run PACKAGE`".to_owned()),
        },
        "docker" | "podman" => match rest.split_first() {
            Some((run, rest)) if run == "run" => {
                container(program, rest).map(|c| Some(Launcher::Container(c)))
            }
            _ => Err(format!(
                "`{name}` runs a server only as `{name} run ... IMAGE`"
            )),
        },
        _ => Ok(None),
    }
}

/// `npx [-y] [-p PKG] SPEC [ARGS]`.
fn npm(via: &str, rest: &[String]) -> Result<Package, String> {
    package(
        via,
        rest,
        &["-y", "--yes", "-q", "--quiet"],
        &["-p", "--package"],
        split_npm_spec,
    )
}

/// `uvx [--from SPEC] NAME [ARGS]`, `pipx run [--spec SPEC] NAME [ARGS]`.
fn pypi(via: &str, rest: &[String], from_flag: &str) -> Result<Package, String> {
    package(via, rest, &["-q", "--quiet"], &[from_flag], split_pypi_spec)
}

/// Splits a package spec into its name and the version it asks for (`None`: the latest).
type SplitSpec = fn(&str) -> Result<(String, Option<String>), String>;

/// A package line: the launcher's own options up to the first word (`ignored` ones dropped;
/// one of `from` names the package, and the first word is then the command to run from it;
/// any other option is refused), then the server's arguments.
fn package(
    via: &str,
    rest: &[String],
    ignored: &[&str],
    from: &[&str],
    split: SplitSpec,
) -> Result<Package, String> {
    let line = options(rest, |flag| {
        if ignored.contains(&flag) {
            Ok(Take::Drop)
        } else if from.contains(&flag) {
            Ok(Take::Value)
        } else {
            Err(format!(
                "`{via}` option `{flag}` is not supported: Portcullis installs the package itself"
            ))
        }
    })?;
    let Some(first) = line.first else {
        return Err(format!("`{via}` names no package"));
    };
    let (spec, command) = match line.kept.into_iter().find_map(|(_, value)| value) {
        Some(spec) => (spec, Some(first)),
        None => (first, None),
    };
    let (name, requested) = split(&spec)?;
    Ok(Package {
        via: via.to_owned(),
        name,
        requested,
        command,
        args: line.rest,
    })
}

/// What a launcher does with one of its own options.
enum Take {
    /// Dropped: Portcullis does what it asks anyway.
    Drop,
    /// Kept, alone.
    Flag,
    /// Kept with its value (`--opt value` or `--opt=value`).
    Value,
}

/// A launcher line after its program: the options kept, the first word that is not an option,
/// and the words after it.
struct Line {
    kept: Vec<(String, Option<String>)>,
    first: Option<String>,
    rest: Vec<String>,
}

/// Reads the options before the first word, each as `take` says (an error refuses the line).
fn options(words: &[String], take: impl Fn(&str) -> Result<Take, String>) -> Result<Line, String> {
    let mut kept = Vec::new();
    let mut words = words.iter();
    while let Some(word) = words.next() {
        let (flag, inline) = match word.split_once('=') {
            Some((flag, value)) if flag.starts_with('-') => (flag, Some(value.to_owned())),
            _ => (word.as_str(), None),
        };
        if !flag.starts_with('-') {
            return Ok(Line {
                kept,
                first: Some(word.clone()),
                rest: words.cloned().collect(),
            });
        }
        match take(flag)? {
            Take::Drop => {}
            Take::Flag => kept.push((flag.to_owned(), None)),
            Take::Value => {
                let Some(value) = inline.or_else(|| words.next().cloned()) else {
                    return Err(format!("`{flag}` needs a value"));
                };
                kept.push((flag.to_owned(), Some(value)));
            }
        }
    }
    Ok(Line {
        kept,
        first: None,
        rest: Vec::new(),
    })
}

/// `name`, `name@version`, `@scope/name`, `@scope/name@version`; no paths, URLs or git.
fn split_npm_spec(spec: &str) -> Result<(String, Option<String>), String> {
    let (name, version) = match spec.get(1..).and_then(|rest| rest.rfind('@')) {
        Some(at) => (&spec[..=at], Some(&spec[at + 2..])),
        None => (spec, None),
    };
    let scoped = name.strip_prefix('@').map(|n| n.split_once('/'));
    let valid_part = |part: &str| {
        !part.is_empty()
            && !part.starts_with('.')
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._~".contains(&b))
    };
    let valid = match scoped {
        Some(Some((scope, bare))) => valid_part(scope) && valid_part(bare),
        Some(None) => false,
        None => valid_part(name),
    };
    if !valid {
        return Err(format!(
            "`{spec}` is not an npm registry package (a path, URL or git source cannot be pinned); publish it, or run it with `node` and the path"
        ));
    }
    let version = version.filter(|v| !v.is_empty());
    // A version, range or tag: never another source (`file:`, `git+…`, `npm:` aliases, URLs).
    if version.is_some_and(|v| {
        !v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b" .^~<>=*|+-".contains(&b))
    }) {
        return Err(format!(
            "`{spec}` does not name a version of a registry package (`name@1.2.3`, a range, or a tag); another source cannot be pinned"
        ));
    }
    Ok((name.to_owned(), version.map(str::to_owned)))
}

/// `name`, `name==version`, `name@version` (uvx's form); no extras, ranges, paths or URLs.
fn split_pypi_spec(spec: &str) -> Result<(String, Option<String>), String> {
    let (name, version) = match spec.split_once("==").or_else(|| spec.split_once('@')) {
        Some((name, version)) => (name, Some(version)),
        None => (spec, None),
    };
    let valid_name = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
    let valid_version = version.is_none_or(|v| {
        !v.is_empty()
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._+!-".contains(&b))
    });
    if !valid_name || !valid_version {
        return Err(format!(
            "`{spec}` is not a PyPI package with an exact version (`name` or `name==1.2.3`; ranges, extras, paths and URLs cannot be pinned)"
        ));
    }
    let version = version.filter(|v| *v != "latest").map(str::to_owned);
    Ok((name.to_owned(), version))
}

/// Options of `docker run` that take a value, and which of them are kept.
const VALUED_KEPT: &[&str] = &[
    "-e",
    "--env",
    "-w",
    "--workdir",
    "--entrypoint",
    "--platform",
];
/// Flags kept, or ignored because Portcullis sets them anyway.
const FLAGS_KEPT: &[&str] = &["--init"];
const FLAGS_IMPLIED: &[&str] = &["-i", "--interactive", "--rm"];

/// `docker run [OPTIONS] IMAGE [ARGS]`: isolation options are refused, since Portcullis sets
/// them (network, mounts, user, capabilities, limits); environment and entry options are kept.
fn container(engine: &str, rest: &[String]) -> Result<ContainerRun, String> {
    let line = options(rest, |flag| {
        if FLAGS_IMPLIED.contains(&flag) {
            Ok(Take::Drop)
        } else if FLAGS_KEPT.contains(&flag) {
            Ok(Take::Flag)
        } else if VALUED_KEPT.contains(&flag) {
            Ok(Take::Value)
        } else {
            Err(format!(
                "`{engine} run` option `{flag}` is not supported: Portcullis sets the container's network, mounts (from `roots`), user, capabilities and limits itself"
            ))
        }
    })?;
    let Some(image) = line.first else {
        return Err(format!("`{engine} run` names no image"));
    };
    Ok(ContainerRun {
        engine: engine.to_owned(),
        image,
        options: line
            .kept
            .into_iter()
            .flat_map(|(flag, value)| std::iter::once(flag).chain(value))
            .collect(),
        args: line.rest,
    })
}

#[cfg(test)]
#[expect(clippy::panic, reason = "tests")]
mod tests {
    use super::*;

    fn line(text: &str) -> Vec<String> {
        text.split(' ').map(str::to_owned).collect()
    }

    fn package(text: &str) -> Package {
        match launcher(&line(text)) {
            Ok(Some(Launcher::Npm(p) | Launcher::Pypi(p))) => p,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn package_lines_name_the_package_the_version_and_the_arguments() {
        let cases = [
            (
                "npx -y @modelcontextprotocol/server-filesystem /srv",
                "@modelcontextprotocol/server-filesystem",
                None,
                None,
                vec!["/srv"],
            ),
            (
                "npx @scope/pkg@1.2.3 --flag x",
                "@scope/pkg",
                Some("1.2.3"),
                None,
                vec!["--flag", "x"],
            ),
            ("npx -y pkg@latest", "pkg", Some("latest"), None, vec![]),
            (
                "npx -p pkg@2 pkg-cli serve",
                "pkg",
                Some("2"),
                Some("pkg-cli"),
                vec!["serve"],
            ),
            ("/usr/local/bin/bunx pkg", "pkg", None, None, vec![]),
            (
                "uvx mcp-server-time --local-timezone UTC",
                "mcp-server-time",
                None,
                None,
                vec!["--local-timezone", "UTC"],
            ),
            (
                "uvx mcp-server-time==2026.10.19",
                "mcp-server-time",
                Some("2026.10.19"),
                None,
                vec![],
            ),
            (
                "uvx mcp-server-time@latest",
                "mcp-server-time",
                None,
                None,
                vec![],
            ),
            (
                "uvx --from mcp-tools==1.0 mcp-git",
                "mcp-tools",
                Some("1.0"),
                Some("mcp-git"),
                vec![],
            ),
            (
                "pipx run --spec=tools==2 run-it a",
                "tools",
                Some("2"),
                Some("run-it"),
                vec!["a"],
            ),
        ];
        for (text, name, version, command, args) in cases {
            let p = package(text);
            assert_eq!(
                (
                    p.name.as_str(),
                    p.requested.as_deref(),
                    p.command.as_deref(),
                    p.args
                ),
                (
                    name,
                    version,
                    command,
                    args.iter().map(|a| (*a).to_owned()).collect()
                ),
                "{text}"
            );
        }
    }

    #[test]
    fn what_cannot_be_pinned_or_would_change_isolation_is_refused() {
        for text in [
            "npx ./local/server",
            "npx github:user/repo",
            "npx --registry x pkg",
            "npx -y",
            "uvx git+https://x/y",
            "npx pkg@file:/tmp/evil",
            "npx pkg@npm:other@1",
            "npx pkg@https://x/y.tgz",
            "uvx pkg>=1",
            "uvx --python 3.12 pkg",
            "pipx install pkg",
            "docker run -i --rm --network host img",
            "docker run -v /:/host img",
            "docker run --privileged img",
            "docker ps",
        ] {
            assert!(launcher(&line(text)).is_err(), "{text}");
        }
        assert_eq!(launcher(&line("node server.js")), Ok(None));
    }

    #[test]
    fn a_container_line_keeps_its_environment_and_drops_what_portcullis_sets() {
        let Ok(Some(Launcher::Container(run))) = launcher(&line(
            "docker run -i --rm -e GITHUB_TOKEN --env=MODE=ro ghcr.io/github/github-mcp-server stdio",
        )) else {
            panic!("a container");
        };
        assert_eq!(run.image, "ghcr.io/github/github-mcp-server");
        assert_eq!(run.options, line("-e GITHUB_TOKEN --env MODE=ro"));
        assert_eq!(run.args, line("stdio"));
    }
}
