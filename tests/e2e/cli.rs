//! `portcullis check`: says exactly what is wrong and where, and exits non-zero.

use std::process::Command;

use crate::support::{Scratch, bin, repo_root};

fn check(config: &std::path::Path) -> (bool, String, String) {
    let output = Command::new(bin("portcullis"))
        .args(["check", "--config"])
        .arg(config)
        .output()
        .unwrap_or_else(|e| panic!("cannot run portcullis check: {e}"));
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_shipped_config_checks_clean() {
    let (ok, stdout, stderr) = check(&repo_root().join("config/portcullis.toml"));
    assert!(ok, "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stdout.contains(": ok (3 upstreams, 5 policies)"),
        "{stdout}"
    );
}

#[test]
fn errors_name_file_line_and_column() {
    let scratch = Scratch::new();
    let config = scratch.config(
        "[server]\nnamespacing = \"flat\"\n\n[[upstream]]\nname = \"a b\"\ncommand = [\"x\"]\n",
    );
    let (ok, _, stderr) = check(&config);
    assert!(!ok);
    let file = config.display().to_string();
    assert!(
        stderr.contains(&format!("{file}:2:15: unknown namespacing `flat`")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{file}:5:8: upstream name `a b` may contain only")),
        "{stderr}"
    );
}

#[test]
fn missing_programs_are_reported_by_upstream() {
    let scratch = Scratch::new();
    let config =
        scratch.config("[[upstream]]\nname = \"ghost\"\ncommand = [\"./no/such/server\"]\n");
    let (ok, _, stderr) = check(&config);
    assert!(!ok);
    assert!(
        stderr.contains("upstream `ghost`: program") && stderr.contains("was not found"),
        "{stderr}"
    );
}

#[test]
fn serve_refuses_a_non_loopback_listener() {
    let scratch = Scratch::new();
    let config = scratch.config("[[upstream]]\nname = \"a\"\ncommand = [\"true\"]\n");
    let output = Command::new(bin("portcullis"))
        .args(["serve", "--config"])
        .arg(&config)
        .args(["--listen", "0.0.0.0:0"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run portcullis: {e}"));
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("is not a loopback address"));
}
