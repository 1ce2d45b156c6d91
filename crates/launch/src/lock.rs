//! The lock file beside the config (`portcullis.toml` → `portcullis.lock`): for each launcher
//! upstream, the package and version it runs and the registry's integrity hash of it. Written
//! by `portcullis prepare` (and by `serve` for what was missing), reviewed in git like any lock
//! file. Unreadable or corrupt means nothing is launched: it is never rewritten over.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::LaunchError;

const HEADER: &str = "# Written by `portcullis prepare`: the package and version each launcher upstream runs, and\n# the registry's integrity hash of it. Review changes like any lock file; a package is never\n# upgraded unless its line in the config or this file changes.\n";
const VERSION: u32 = 1;

/// Which registry a package comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Registry {
    Npm,
    Pypi,
}

impl Registry {
    pub fn name(self) -> &'static str {
        match self {
            Registry::Npm => "npm",
            Registry::Pypi => "pypi",
        }
    }
}

/// One launcher upstream's package, as prepared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Locked {
    pub upstream: String,
    pub registry: Registry,
    pub name: String,
    /// What the config asked for (`latest` when it named no version).
    pub requested: String,
    /// The exact version installed.
    pub version: String,
    /// The registry's hash of the package (`sha512-…` for npm, `sha256:…` for PyPI).
    pub integrity: String,
    /// The entry point, relative to the package's install directory.
    pub entry: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LockFile {
    version: u32,
    #[serde(default, rename = "package")]
    packages: Vec<Locked>,
}

/// The lock file of a config: where it is, and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    path: PathBuf,
    packages: Vec<Locked>,
}

impl Lock {
    /// The lock file beside `config` (same name, `.lock`); an absent file is an empty lock.
    pub fn beside(config: &Path) -> Result<Self, LaunchError> {
        let path = config.with_extension("lock");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Lock {
                    path,
                    packages: Vec::new(),
                });
            }
            Err(error) => return Err(LaunchError::lock(&path, error.to_string())),
        };
        let file: LockFile =
            toml::from_str(&text).map_err(|error| LaunchError::lock(&path, error.to_string()))?;
        if file.version != VERSION {
            return Err(LaunchError::lock(
                &path,
                format!(
                    "it is version {}, and this Portcullis reads version {VERSION}",
                    file.version
                ),
            ));
        }
        if let Some(bad) = file.packages.iter().find_map(unsafe_entry) {
            return Err(LaunchError::lock(&path, bad));
        }
        Ok(Lock {
            path,
            packages: file.packages,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The entry of `upstream`, if it still asks for what was locked.
    pub fn get(
        &self,
        upstream: &str,
        registry: Registry,
        name: &str,
        requested: &str,
    ) -> Option<&Locked> {
        self.packages.iter().find(|locked| {
            locked.upstream == upstream
                && locked.registry == registry
                && locked.name == name
                && locked.requested == requested
        })
    }

    /// Records `locked`, replacing `upstream`'s earlier entry.
    pub fn set(&mut self, locked: Locked) {
        self.packages.retain(|old| old.upstream != locked.upstream);
        self.packages.push(locked);
        self.packages.sort_by(|a, b| a.upstream.cmp(&b.upstream));
    }

    /// Writes the lock (a new file renamed over the old one, so a reader never sees half).
    pub fn save(&self) -> Result<(), LaunchError> {
        let file = LockFile {
            version: VERSION,
            packages: self.packages.clone(),
        };
        let body = toml::to_string(&file)
            .map_err(|error| LaunchError::lock(&self.path, error.to_string()))?;
        let partial = self.path.with_extension("lock.partial");
        let written = std::fs::File::create(&partial).and_then(|mut out| {
            out.write_all(HEADER.as_bytes())?;
            out.write_all(body.as_bytes())?;
            out.sync_all()
        });
        written
            .and_then(|()| std::fs::rename(&partial, &self.path))
            .map_err(|error| LaunchError::lock(&self.path, format!("cannot write it: {error}")))
    }
}

/// Why an entry cannot be used: its name, version or entry point would lead out of its own
/// install directory (a lock file is edited by hand and reviewed in git; it is input).
pub(crate) fn unsafe_entry(locked: &Locked) -> Option<String> {
    let plain = |text: &str| {
        !text.is_empty()
            && !text.starts_with('.')
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~+!".contains(&b))
    };
    let name_ok = match locked.name.strip_prefix('@') {
        Some(scoped) => scoped
            .split_once('/')
            .is_some_and(|(scope, bare)| plain(scope) && plain(bare)),
        None => plain(&locked.name),
    };
    let entry = Path::new(&locked.entry);
    let entry_ok = entry.is_relative()
        && entry
            .components()
            .all(|part| matches!(part, std::path::Component::Normal(_)));
    (!(name_ok && plain(&locked.version) && entry_ok)).then(|| {
        format!(
            "its entry for upstream `{}` names a package, version or entry point that is not a plain name ({} {} {})",
            locked.upstream, locked.name, locked.version, locked.entry
        )
    })
}

#[cfg(test)]
#[expect(clippy::panic, reason = "tests")]
mod tests {
    use super::*;

    fn entry(upstream: &str) -> Locked {
        Locked {
            upstream: upstream.to_owned(),
            registry: Registry::Npm,
            name: "pkg".to_owned(),
            requested: "latest".to_owned(),
            version: "1.0.0".to_owned(),
            integrity: "sha512-abc".to_owned(),
            entry: "node_modules/pkg/index.js".to_owned(),
        }
    }

    #[test]
    fn a_lock_round_trips_and_an_absent_one_is_empty() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let config = dir.path().join("portcullis.toml");
        let mut lock = Lock::beside(&config).unwrap_or_else(|e| panic!("{e}"));
        assert!(lock.get("a", Registry::Npm, "pkg", "latest").is_none());
        lock.set(entry("b"));
        lock.set(entry("a"));
        lock.save().unwrap_or_else(|e| panic!("{e}"));
        let again = Lock::beside(&config).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again, lock);
        assert_eq!(again.path(), dir.path().join("portcullis.lock"));
        assert!(again.get("a", Registry::Npm, "pkg", "latest").is_some());
        assert!(again.get("a", Registry::Npm, "pkg", "2").is_none());
    }

    #[test]
    fn a_corrupt_lock_is_an_error_not_an_empty_lock() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let config = dir.path().join("portcullis.toml");
        // Entries whose name, version or entry point would lead out of their directory.
        let escaping = |field: &str, value: &str| {
            let mut bad = entry("a");
            match field {
                "name" => bad.name = value.to_owned(),
                "version" => bad.version = value.to_owned(),
                _ => bad.entry = value.to_owned(),
            }
            let file = LockFile {
                version: VERSION,
                packages: vec![bad],
            };
            toml::to_string(&file).unwrap_or_else(|e| panic!("{e}"))
        };
        let texts = [
            "version = 1\n[[package]]\nupstream = 3\n".to_owned(),
            "version = 9\n".to_owned(),
            "{".to_owned(),
            escaping("name", "../../etc"),
            escaping("version", "1.0.0/../../../x"),
            escaping("entry", "../../bin/sh"),
            escaping("entry", "/bin/sh"),
        ];
        for text in texts {
            std::fs::write(dir.path().join("portcullis.lock"), &text)
                .unwrap_or_else(|e| panic!("{e}"));
            let error = Lock::beside(&config).err().map(|e| e.to_string());
            assert!(
                error
                    .as_deref()
                    .is_some_and(|e| e.contains("portcullis.lock")),
                "{text}: {error:?}"
            );
        }
        // The same entry with plain names is read.
        std::fs::write(
            dir.path().join("portcullis.lock"),
            escaping("name", "@scope/pkg"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(Lock::beside(&config).is_ok());
    }
}
