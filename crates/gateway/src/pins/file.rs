//! The bytes of the pins file (`portcullis.toml` → `portcullis.pins.json`): per upstream, per
//! kind, per the upstream's own name, the definition a person accepted and its digest.
//!
//! JSON, pretty-printed with every key sorted, one member per line: a definition that changes
//! shows in `git diff` as the lines that changed (a description, one parameter, one hint), and
//! the file is the same bytes whenever it holds the same pins. An unreadable or corrupt file is
//! an error naming it, never read as "nothing pinned" and never written over.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use portcullis_audit::digest_json;
use serde::{Deserialize, Serialize};
use serde_json::Value;

const VERSION: u32 = 1;
/// Said at the top of the file (JSON has no comments, so it is a member).
const NOTE: &str = "Written by portcullis: each upstream's tool, prompt and resource template definitions as accepted. Review changes like any lock file; `portcullis pins diff` shows what an upstream lists now, `portcullis pins accept` records it.";

/// Which list a definition comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EntryKind {
    Tool,
    Prompt,
    ResourceTemplate,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Tool => "tool",
            EntryKind::Prompt => "prompt",
            EntryKind::ResourceTemplate => "resource_template",
        }
    }
}

/// One pinned definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    /// `digest_json` of `definition` (the digest evidence records name).
    pub digest: String,
    pub definition: Value,
}

impl Pin {
    /// A pin of `definition` (its keys sorted, so the file is stable).
    pub fn of(definition: &Value) -> Self {
        let definition = sorted(definition);
        Self {
            digest: digest_json(&definition),
            definition,
        }
    }
}

/// One upstream's pins.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamPins {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    tool: BTreeMap<String, Pin>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    prompt: BTreeMap<String, Pin>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    resource_template: BTreeMap<String, Pin>,
}

impl UpstreamPins {
    pub fn get(&self, kind: EntryKind, name: &str) -> Option<&Pin> {
        self.of(kind).get(name)
    }

    pub fn insert(&mut self, kind: EntryKind, name: String, pin: Pin) {
        self.of_mut(kind).insert(name, pin);
    }

    pub fn remove(&mut self, kind: EntryKind, name: &str) -> Option<Pin> {
        self.of_mut(kind).remove(name)
    }

    /// Every pin, by kind then name.
    pub fn entries(&self) -> impl Iterator<Item = (EntryKind, &String, &Pin)> {
        [
            EntryKind::Tool,
            EntryKind::Prompt,
            EntryKind::ResourceTemplate,
        ]
        .into_iter()
        .flat_map(move |kind| {
            self.of(kind)
                .iter()
                .map(move |(name, pin)| (kind, name, pin))
        })
    }

    fn of(&self, kind: EntryKind) -> &BTreeMap<String, Pin> {
        match kind {
            EntryKind::Tool => &self.tool,
            EntryKind::Prompt => &self.prompt,
            EntryKind::ResourceTemplate => &self.resource_template,
        }
    }

    fn of_mut(&mut self, kind: EntryKind) -> &mut BTreeMap<String, Pin> {
        match kind {
            EntryKind::Tool => &mut self.tool,
            EntryKind::Prompt => &mut self.prompt,
            EntryKind::ResourceTemplate => &mut self.resource_template,
        }
    }
}

/// Everything the file holds: each upstream's pins by its configured name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pins {
    pub upstreams: BTreeMap<String, UpstreamPins>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PinsFile {
    #[serde(rename = "_note", default)]
    note: String,
    version: u32,
    #[serde(default)]
    upstream: BTreeMap<String, UpstreamPins>,
}

/// Why the pins file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("cannot read the pins file `{}`: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the pins file `{}` is corrupt: {reason}; fix or restore it (from git), or delete it to pin every upstream afresh", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("cannot write the pins file `{}`: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The pins in the shared state's database cannot be read, written or trusted (replicas
    /// sharing state: `shared.rs`).
    #[error("the pins in the shared database: {0}")]
    Shared(String),
}

/// Where the pins of the config at `config` are kept: beside it, `NAME.pins.json`.
pub fn pins_path(config: &Path) -> PathBuf {
    config.with_extension("pins.json")
}

/// Reads the pins file: absent is no pins; anything else that is not a valid file is an error.
pub fn read(path: &Path) -> Result<Pins, PinError> {
    match std::fs::read(path) {
        Ok(bytes) => parse(path, &bytes),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Pins::default()),
        Err(source) => Err(PinError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The pins `bytes` hold; `path` names the file in errors.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Pins, PinError> {
    let corrupt = |reason: String| PinError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    // serde_json's messages can quote the text; only the position is passed on.
    let file: PinsFile = serde_json::from_slice(bytes).map_err(|error| {
        corrupt(format!(
            "not a pins file at line {}, column {}",
            error.line(),
            error.column()
        ))
    })?;
    if file.version != VERSION {
        return Err(corrupt(format!(
            "version {} is not {VERSION}, the only one this portcullis reads",
            file.version
        )));
    }
    for (upstream, pins) in &file.upstream {
        verify(upstream, pins).map_err(corrupt)?;
    }
    Ok(Pins {
        upstreams: file.upstream,
    })
}

/// Whether every digest of `upstream`'s `pins` matches its definition: a definition edited
/// without its digest (or the reverse) is not what anyone accepted, so neither is trusted.
pub(crate) fn verify(upstream: &str, pins: &UpstreamPins) -> Result<(), String> {
    for (kind, name, pin) in pins.entries() {
        if digest_json(&pin.definition) != pin.digest {
            return Err(format!(
                "the digest of upstream `{upstream}` {} `{name}` does not match its definition",
                kind.as_str()
            ));
        }
    }
    Ok(())
}

/// The file's bytes for `pins`: sorted, indented, ending with a newline.
pub fn render(pins: &Pins) -> String {
    let file = PinsFile {
        note: NOTE.to_owned(),
        version: VERSION,
        upstream: pins.upstreams.clone(),
    };
    let value = serde_json::to_value(&file).unwrap_or(Value::Null);
    let mut text = serde_json::to_string_pretty(&sorted(&value)).unwrap_or_default();
    text.push('\n');
    text
}

/// Locks the directory of the pins file at `path` against the other writers of every process
/// (`serve` pinning at first sight, `portcullis pins accept`) until the returned handle is
/// dropped. The directory, because the file is replaced by rename (a lock on it would guard
/// nothing) and a lock file beside it would be one more file in a directory kept in git.
pub fn lock(path: &Path) -> Result<std::fs::File, PinError> {
    let directory = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let failed = |source| PinError::Write {
        path: path.to_path_buf(),
        source,
    };
    let handle = std::fs::File::open(directory).map_err(failed)?;
    handle.lock().map_err(failed)?;
    Ok(handle)
}

/// Writes `pins` to a new file beside `path`, synced, then renamed over it. The caller holds
/// [`lock`]: the temporary file has one fixed name.
pub fn write(path: &Path, pins: &Pins) -> Result<(), PinError> {
    let failed = |source| PinError::Write {
        path: path.to_path_buf(),
        source,
    };
    let temporary = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&temporary).map_err(failed)?;
    file.write_all(render(pins).as_bytes()).map_err(failed)?;
    file.sync_all().map_err(failed)?;
    drop(file);
    std::fs::rename(&temporary, path).map_err(failed)?;
    if let Some(directory) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::File::open(directory)
            .and_then(|d| d.sync_all())
            .map_err(failed)?;
    }
    Ok(())
}

/// `value` with every object's keys in order, whatever order serde_json keeps them in
/// (`preserve_order` is on in the binary), so the file and its diffs do not depend on the
/// order an upstream sent them in.
pub fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let ordered: BTreeMap<&String, Value> = map
                .iter()
                .map(|(key, value)| (key, sorted(value)))
                .collect();
            Value::Object(
                ordered
                    .into_iter()
                    .map(|(key, value)| (key.clone(), value))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}
