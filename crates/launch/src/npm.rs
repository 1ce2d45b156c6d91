//! npm packages: installed with `npm install --prefix` into a directory of their own, scripts
//! off; the version and integrity read back from what npm installed and locked.

use std::path::Path;
use std::process::Command;

use portcullis_config::Package;
use serde_json::Value;

use crate::lock::{Locked, Registry};
use crate::run::{field, read_json, run};
use crate::{LaunchError, install_dir};

pub(crate) fn install(
    upstream: &str,
    package: &Package,
    locked: Option<&Locked>,
    packages: &Path,
) -> Result<Locked, LaunchError> {
    let requested = package.requested_or_latest();
    let version = locked.map_or(requested, |l| l.version.as_str());
    let area = packages.join(Registry::Npm.name());
    let staging = area.join(format!(".staging-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(|error| {
        LaunchError::upstream(
            upstream,
            format!("cannot create {}: {error}", staging.display()),
        )
    })?;
    let outcome =
        install_in(upstream, package, version, &staging).and_then(|(found, integrity)| {
            let entry = entry_point(upstream, package, &staging)?;
            Ok(Locked {
                upstream: upstream.to_owned(),
                registry: Registry::Npm,
                name: package.name.clone(),
                requested: requested.to_owned(),
                version: found,
                integrity,
                entry,
            })
        });
    let installed = match outcome {
        Ok(installed) => installed,
        Err(error) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(error);
        }
    };
    if let Some(locked) = locked
        && (locked.version != installed.version || locked.integrity != installed.integrity)
    {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(LaunchError::upstream(
            upstream,
            format!(
                "the registry's {}@{} ({}) is not what the lock file recorded ({}@{}, {}): not installed; if the change is expected, delete its entry from the lock file and prepare again",
                installed.name,
                installed.version,
                installed.integrity,
                locked.name,
                locked.version,
                locked.integrity
            ),
        ));
    }
    // What the registry said becomes a path: it must be a plain name.
    if let Some(bad) = crate::lock::unsafe_entry(&installed) {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(LaunchError::upstream(upstream, bad));
    }
    let target = install_dir(packages, &installed);
    let _ = std::fs::remove_dir_all(&target);
    std::fs::rename(&staging, &target).map_err(|error| {
        LaunchError::upstream(
            upstream,
            format!("cannot move it into {}: {error}", target.display()),
        )
    })?;
    Ok(installed)
}

/// `npm install` of `name@version` in `dir`: the version installed and its integrity.
fn install_in(
    upstream: &str,
    package: &Package,
    version: &str,
    dir: &Path,
) -> Result<(String, String), LaunchError> {
    let spec = format!("{}@{version}", package.name);
    run(
        upstream,
        &format!("npm install {spec}"),
        Command::new("npm")
            .arg("install")
            .arg("--prefix")
            .arg(dir)
            .args([
                "--ignore-scripts",
                "--no-audit",
                "--no-fund",
                "--no-update-notifier",
            ])
            .args(["--loglevel=error", "--save-exact"])
            .arg(&spec),
    )?;
    let manifest = read_json(
        upstream,
        &dir.join("node_modules")
            .join(&package.name)
            .join("package.json"),
    )?;
    let lock = read_json(upstream, &dir.join("package-lock.json"))?;
    let key = format!("node_modules/{}", package.name);
    let found = field(&manifest, &["version"]).unwrap_or_default();
    let integrity = field(&lock, &["packages", &key, "integrity"]).unwrap_or_default();
    if found.is_empty() || integrity.is_empty() {
        return Err(LaunchError::upstream(
            upstream,
            format!("npm installed {spec} without a version or an integrity hash"),
        ));
    }
    Ok((found, integrity))
}

/// The file the package's `bin` names: the one named like the command asked for, else like
/// the package (without its scope), else its only one.
fn entry_point(upstream: &str, package: &Package, dir: &Path) -> Result<String, LaunchError> {
    let root = Path::new("node_modules").join(&package.name);
    let manifest = read_json(upstream, &dir.join(&root).join("package.json"))?;
    let bare = package.name.rsplit('/').next().unwrap_or(&package.name);
    let wanted = package.command.as_deref().unwrap_or(bare);
    let file = match manifest.get("bin").unwrap_or(&Value::Null) {
        Value::String(file) if package.command.is_none() => Some(file.clone()),
        Value::Object(bins) => bins
            .get(wanted)
            .or_else(|| (bins.len() == 1).then(|| bins.values().next()).flatten())
            .and_then(Value::as_str)
            .map(str::to_owned),
        _ => None,
    };
    let Some(file) = file else {
        return Err(LaunchError::upstream(
            upstream,
            format!(
                "npm package `{}` has no command `{wanted}` in its `bin`",
                package.name
            ),
        ));
    };
    let entry = root.join(file.trim_start_matches("./"));
    if !dir.join(&entry).is_file() {
        return Err(LaunchError::upstream(
            upstream,
            format!(
                "npm package `{}` names `{file}` as its command, which it does not contain",
                package.name
            ),
        ));
    }
    Ok(entry.display().to_string())
}

#[cfg(test)]
#[expect(clippy::panic, reason = "tests")]
mod tests {
    use super::*;

    /// A package `name` in `dir/node_modules` whose manifest has `bin`, with the files `files`.
    fn installed(dir: &Path, name: &str, bin: Value, files: &[&str]) {
        let root = dir.join("node_modules").join(name);
        std::fs::create_dir_all(&root).unwrap_or_else(|e| panic!("{e}"));
        for file in files {
            let path = root.join(file);
            std::fs::create_dir_all(path.parent().unwrap_or(&root))
                .unwrap_or_else(|e| panic!("{e}"));
            std::fs::write(&path, "").unwrap_or_else(|e| panic!("{e}"));
        }
        let manifest = serde_json::json!({"name": name, "version": "1.0.0", "bin": bin});
        std::fs::write(root.join("package.json"), manifest.to_string())
            .unwrap_or_else(|e| panic!("{e}"));
    }

    fn package(name: &str, command: Option<&str>) -> Package {
        Package {
            via: "npx".to_owned(),
            name: name.to_owned(),
            requested: None,
            command: command.map(str::to_owned),
            args: Vec::new(),
        }
    }

    #[test]
    fn the_entry_point_is_the_bin_the_line_names() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let d = dir.path();
        installed(
            d,
            "@s/one",
            serde_json::json!("./dist/index.js"),
            &["dist/index.js"],
        );
        installed(
            d,
            "@s/many",
            serde_json::json!({"many": "bin/main.js", "many-admin": "bin/admin.js"}),
            &["bin/main.js", "bin/admin.js"],
        );
        installed(
            d,
            "@s/lonely",
            serde_json::json!({"other": "cli.js"}),
            &["cli.js"],
        );
        installed(d, "@s/missing", serde_json::json!("gone.js"), &[]);
        let entry =
            |name, command| entry_point("u", &package(name, command), d).map_err(|e| e.to_string());
        assert_eq!(
            entry("@s/one", None),
            Ok("node_modules/@s/one/dist/index.js".to_owned())
        );
        assert_eq!(
            entry("@s/many", None),
            Ok("node_modules/@s/many/bin/main.js".to_owned())
        );
        assert_eq!(
            entry("@s/many", Some("many-admin")),
            Ok("node_modules/@s/many/bin/admin.js".to_owned())
        );
        assert_eq!(
            entry("@s/lonely", None),
            Ok("node_modules/@s/lonely/cli.js".to_owned())
        );
        assert!(entry("@s/many", Some("nope")).is_err_and(|e| e.contains("no command `nope`")));
        assert!(entry("@s/missing", None).is_err_and(|e| e.contains("does not contain")));
    }
}
