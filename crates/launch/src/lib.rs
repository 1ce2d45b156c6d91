//! Launcher upstreams: the `npx`, `uvx` and `docker run` lines MCP servers are published with,
//! made into something Portcullis can contain. A package is installed at a pinned version into
//! Portcullis's package directory, outside the sandbox and as the user, with the registry's
//! integrity hash recorded in the lock file beside the config ([`prepare`]); then its entry
//! point runs directly, contained, with read-only access to its own directory: no npm or uv at
//! run time, no registry lookups, no writable shared cache ([`resolve`]). A container image
//! runs with the isolation Portcullis sets ([`container`]).
//!
//! Must not: run anything on the request path (preparing happens before serving); install
//! anything a lock entry does not match (a different version or integrity fails closed);
//! run install scripts (`--ignore-scripts`: they would run uncontained).
#![forbid(unsafe_code)]

mod container;
mod lock;
mod npm;
mod pypi;
mod run;

use std::path::{Path, PathBuf};

use portcullis_config::{Config, Containment, Launcher, UpstreamTransport};

pub use container::container_args;
pub use lock::{Lock, Locked, Registry};

/// Why a launcher upstream cannot be prepared or run, in plain words.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("the lock file `{path}` cannot be used: {reason}")]
    Lock { path: PathBuf, reason: String },
    #[error("upstream `{upstream}`: {reason}")]
    Upstream { upstream: String, reason: String },
    #[error(
        "neither HOME nor XDG_DATA_HOME is set, so there is no package directory of yours: set `[server] packages` in the config"
    )]
    NoPackagesDir,
}

impl LaunchError {
    fn lock(path: &Path, reason: String) -> Self {
        LaunchError::Lock {
            path: path.to_path_buf(),
            reason,
        }
    }

    fn upstream(upstream: &str, reason: impl Into<String>) -> Self {
        LaunchError::Upstream {
            upstream: upstream.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Whether any upstream of `config` runs a registry package (and so needs the package
/// directory).
pub fn runs_packages(config: &Config) -> bool {
    config.upstreams.iter().any(|upstream| {
        matches!(
            &upstream.transport,
            UpstreamTransport::Stdio { launcher: Some(launcher), .. }
                if registry_package(launcher).is_some()
        )
    })
}

/// The registry and package a launcher runs; `None` for a container.
fn registry_package(launcher: &Launcher) -> Option<(Registry, &portcullis_config::Package)> {
    match launcher {
        Launcher::Npm(package) => Some((Registry::Npm, package)),
        Launcher::Pypi(package) => Some((Registry::Pypi, package)),
        Launcher::Container(_) => None,
    }
}

/// Where packages are installed: config's `[server] packages`, else
/// `$XDG_DATA_HOME/portcullis/packages`, else `~/.local/share/portcullis/packages`. With none
/// of these there is no directory that is the user's own (code run from a shared one could be
/// another user's): an error.
pub fn packages_dir(
    config: &Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<PathBuf, LaunchError> {
    if let Some(dir) = &config.packages {
        return Ok(dir.clone());
    }
    let data = env("XDG_DATA_HOME")
        .filter(|dir| dir.starts_with('/'))
        .map(PathBuf::from)
        .or_else(|| {
            env("HOME")
                .filter(|home| home.starts_with('/'))
                .map(|home| Path::new(&home).join(".local/share"))
        })
        .ok_or(LaunchError::NoPackagesDir)?;
    Ok(data.join("portcullis").join("packages"))
}

/// What [`prepare`] did for one upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub upstream: String,
    pub locked: Locked,
    /// Whether it was installed now (false: the lock and the package directory had it).
    pub installed: bool,
}

/// Installs every package `config`'s launcher upstreams need that the package directory lacks,
/// at the version the lock names (or, for one not yet locked, the version asked for, `latest`
/// resolved once), records each in `lock` and saves it. `progress` hears one line per step.
pub fn prepare(
    config: &Config,
    lock: &mut Lock,
    packages: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Prepared>, LaunchError> {
    let mut done = Vec::new();
    for upstream in &config.upstreams {
        let UpstreamTransport::Stdio {
            launcher: Some(launcher),
            ..
        } = &upstream.transport
        else {
            continue;
        };
        let name = upstream.name.as_str();
        let Some((registry, package)) = registry_package(launcher) else {
            continue;
        };
        let requested = package.requested_or_latest();
        let locked = lock.get(name, registry, &package.name, requested).cloned();
        if let Some(locked) = &locked
            && install_dir(packages, locked).join(&locked.entry).is_file()
        {
            done.push(Prepared {
                upstream: name.to_owned(),
                locked: locked.clone(),
                installed: false,
            });
            continue;
        }
        progress(&format!(
            "upstream `{name}`: installing {} {}@{} into {}",
            registry.name(),
            package.name,
            locked.as_ref().map_or(requested, |l| l.version.as_str()),
            packages.display()
        ));
        let installed = match registry {
            Registry::Npm => npm::install(name, package, locked.as_ref(), packages)?,
            Registry::Pypi => pypi::install(name, package, locked.as_ref(), packages)?,
        };
        progress(&format!(
            "upstream `{name}`: {} {} {} ({})",
            registry.name(),
            installed.name,
            installed.version,
            installed.integrity
        ));
        lock.set(installed.clone());
        lock.save()?;
        done.push(Prepared {
            upstream: name.to_owned(),
            locked: installed,
            installed: true,
        });
    }
    Ok(done)
}

/// Rewrites each launcher upstream of `config` to what it runs: a package's entry point by
/// its interpreter (found on `search_path`), from the install the lock names; a container
/// with Portcullis's isolation. A package the lock or the package directory lacks is an
/// error that says to run `portcullis prepare`.
pub fn resolve(
    config: &mut Config,
    lock: &Lock,
    packages: &Path,
    search_path: &str,
) -> Result<(), LaunchError> {
    for upstream in &mut config.upstreams {
        let name = upstream.name.to_string();
        let roots = upstream.roots.clone();
        let UpstreamTransport::Stdio {
            launcher: Some(launcher),
            program,
            args,
            containment,
            ..
        } = &mut upstream.transport
        else {
            continue;
        };
        let (new_program, new_args) = match launcher {
            Launcher::Npm(package) => {
                let locked = locked_install(lock, &name, Registry::Npm, package, packages)?;
                let node = run::find_program("node", search_path).ok_or_else(|| {
                    LaunchError::upstream(
                        &name,
                        "`node` is not on Portcullis's PATH; install Node.js",
                    )
                })?;
                let entry = install_dir(packages, locked).join(&locked.entry);
                (node, run::with_args(&entry, &package.args))
            }
            Launcher::Pypi(package) => {
                let locked = locked_install(lock, &name, Registry::Pypi, package, packages)?;
                let dir = install_dir(packages, locked);
                let entry = dir.join(&locked.entry);
                (
                    dir.join("bin/python"),
                    run::with_args(&entry, &package.args),
                )
            }
            Launcher::Container(run) => {
                let grants = match &*containment {
                    Containment::Contained(grants) => grants.clone(),
                    Containment::Uncontained | Containment::Container => Default::default(),
                };
                let engine = run::find_program(&run.engine, search_path).ok_or_else(|| {
                    LaunchError::upstream(
                        &name,
                        format!("`{}` is not on Portcullis's PATH", run.engine),
                    )
                })?;
                *containment = Containment::Container;
                (engine, container_args(run, &roots, &grants, run::caller()))
            }
        };
        *program = new_program;
        *args = new_args;
    }
    Ok(())
}

/// The lock's entry for a package whose install is in place.
fn locked_install<'l>(
    lock: &'l Lock,
    upstream: &str,
    registry: Registry,
    package: &portcullis_config::Package,
    packages: &Path,
) -> Result<&'l Locked, LaunchError> {
    let requested = package.requested_or_latest();
    let unprepared = || {
        LaunchError::upstream(
            upstream,
            format!(
                "{} package `{}` ({requested}) is not prepared: run `portcullis prepare --config FILE` (it installs it into {} and records it in {})",
                registry.name(),
                package.name,
                packages.display(),
                lock.path().display()
            ),
        )
    };
    let locked = lock
        .get(upstream, registry, &package.name, requested)
        .ok_or_else(unprepared)?;
    if !install_dir(packages, locked).join(&locked.entry).is_file() {
        return Err(unprepared());
    }
    Ok(locked)
}

/// Where one package version is installed: `<packages>/<registry>/<name>@<version>`, with
/// `/` in a scoped name written `+`.
pub fn install_dir(packages: &Path, locked: &Locked) -> PathBuf {
    packages.join(locked.registry.name()).join(format!(
        "{}@{}",
        locked.name.replace('/', "+"),
        locked.version
    ))
}

#[cfg(test)]
#[expect(clippy::panic, reason = "tests")]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        portcullis_config::parse(Path::new("/etc/p/portcullis.toml"), text)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_package_directory_is_the_users_own_or_none() {
        let npx = config("[[upstream]]\nname = \"a\"\ncommand = [\"npx\", \"pkg\"]\n");
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| (*value).to_owned())
            }
        };
        let dir = |env: &dyn Fn(&str) -> Option<String>| packages_dir(&npx, env).ok();
        assert_eq!(
            dir(&env(&[("HOME", "/home/u")])),
            Some(PathBuf::from("/home/u/.local/share/portcullis/packages"))
        );
        assert_eq!(
            dir(&env(&[("HOME", "/home/u"), ("XDG_DATA_HOME", "/data")])),
            Some(PathBuf::from("/data/portcullis/packages"))
        );
        // No home of the user's: no shared fallback.
        assert_eq!(dir(&env(&[])), None);
        assert_eq!(dir(&env(&[("HOME", "relative")])), None);
        let set = config(
            "[server]\npackages = \"pk\"\n[[upstream]]\nname = \"a\"\ncommand = [\"npx\", \"pkg\"]\n",
        );
        assert_eq!(
            packages_dir(&set, &env(&[])).ok(),
            Some(PathBuf::from("/etc/p/pk"))
        );
        assert!(runs_packages(&npx));
        assert!(!runs_packages(&config(
            "[[upstream]]\nname = \"a\"\ncommand = [\"node\", \"s.js\"]\n"
        )));
    }
}
