//! Pieces of the configs the tests write: the upstream servers they front, and TOML quoting.

use std::path::Path;

use super::*;

pub(crate) fn everything_server() -> Vec<String> {
    vec![
        "node".into(),
        node_module("@modelcontextprotocol/server-everything/dist/index.js")
            .display()
            .to_string(),
        "stdio".into(),
    ]
}

pub(crate) fn filesystem_server(root: &Path) -> Vec<String> {
    vec![
        "node".into(),
        node_module("@modelcontextprotocol/server-filesystem/dist/index.js")
            .display()
            .to_string(),
        root.display().to_string(),
    ]
}

pub(crate) fn fixture_server(scratch: &Path, extra: &[&str]) -> Vec<String> {
    let mut argv = vec![
        bin("portcullis-fixture").display().to_string(),
        "--scratch".into(),
        scratch.display().to_string(),
    ];
    argv.extend(extra.iter().map(|s| (*s).to_owned()));
    argv
}

/// The `command`, `roots` and `cwd` lines of a fixture upstream working in `scratch`: contained,
/// the fixture can use nothing but its scratch directory, and its working directory is that
/// directory too, so Portcullis resolves its relative path arguments as the fixture does.
pub(crate) fn fixture_upstream(scratch: &Path, extra: &[&str]) -> String {
    let scratch_dir = toml_string(&scratch.display().to_string());
    format!(
        "command = {}\nroots = [{scratch_dir}]\ncwd = {scratch_dir}\n",
        toml_array(&fixture_server(scratch, extra)),
    )
}

/// A TOML array of strings.
pub(crate) fn toml_array(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| toml_string(s)).collect();
    format!("[{}]", quoted.join(", "))
}

/// A TOML basic string.
pub(crate) fn toml_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}
