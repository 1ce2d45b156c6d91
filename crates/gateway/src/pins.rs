//! Pins: each upstream's definitions (tools, prompts, resource templates) as a person accepted
//! them, kept in the pins file beside the config (`file.rs`) or, when replicas share state, in
//! the database (`shared.rs`, seeded from the file), and the quarantine of what differs from
//! them.
//!
//! An upstream can change what a tool says or accepts between two lists (a description that
//! later asks for a copy of every mail, a new hidden parameter, a dropped `destructiveHint`).
//! Every catalog an upstream lists is compared with its pins before anyone sees it: a changed
//! definition, and a new one of an upstream that has pins (under `strict`, every unpinned one),
//! is taken out of the catalog itself, so no list shows it and no call, prompt or read reaches
//! it, for any identity, in either era, until `portcullis pins accept` records it.

pub mod diff;
pub mod file;
mod shared;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use portcullis_config::{Pinning, Upstream};
use portcullis_core::evidence::DefinitionChanged;
use portcullis_core::{Namespacing, UpstreamName};
use serde_json::Value;

pub use file::{EntryKind, Pin, PinError, Pins, UpstreamPins, pins_path};

use crate::upstream::Catalog;
use rmcp::model::Tool;

/// The longest diff an evidence record carries; the rest is cut, saying so.
const RECORDED_DIFF: usize = 4_000;

/// Whether a listing of an upstream never pinned is recorded as its pins (`tofu`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recording {
    /// `serve`: first sight is recorded.
    FirstSight,
    /// Commands that only look (`tools`, `check`, `pins diff`): the file is never written by
    /// listing; what would be pinned is reported as unpinned.
    Never,
}

/// The pins in force and where they are kept.
#[derive(Debug)]
pub struct PinBook {
    /// The pins file (under shared state: the one that seeds the database).
    path: PathBuf,
    current: ArcSwap<Pins>,
    recording: Recording,
    kept: Kept,
}

/// Where the pins in force are kept.
#[derive(Debug)]
enum Kept {
    /// In the pins file. `writing` is held while the file is read, changed and replaced, so
    /// two writers in this process do not lose each other's pins; it holds the file's
    /// modification time as this book last read or wrote it, so that only another process's
    /// replacement counts as a change.
    File { writing: Mutex<Option<SystemTime>> },
    /// In the shared state's database, read at every review: what one replica accepts is in
    /// force on every other.
    Shared(shared::Shared),
}

/// A definition an upstream lists, by kind and the upstream's own name (a template's URI
/// template), as canonical JSON.
pub type Definitions = BTreeMap<(EntryKind, String), Value>;

/// How one definition stands against its pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Pinned, and listed with another definition.
    Changed,
    /// Listed, not pinned, while its upstream has pins.
    New,
    /// Listed, and its upstream has no pins at all.
    Unpinned,
    /// Pinned, no longer listed.
    Removed,
    /// Listed, and its upstream's pins cannot be read (shared state unreachable).
    Unverified,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Changed => "changed",
            Status::New => "new",
            Status::Unpinned => "unpinned",
            Status::Removed => "removed",
            Status::Unverified => "unverified",
        }
    }
}

/// One definition that differs from the pins.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub kind: EntryKind,
    /// The upstream's own name.
    pub name: String,
    pub status: Status,
    pub pinned: Option<Pin>,
    /// The listed definition, pinned as it is now.
    pub listed: Option<Pin>,
    /// Whether it is kept out of the catalog until accepted.
    pub quarantined: bool,
}

impl Change {
    /// The lines of the two definitions that differ.
    pub fn diff(&self) -> String {
        diff::diff(
            self.pinned.as_ref().map(|pin| &pin.definition),
            self.listed.as_ref().map(|pin| &pin.definition),
        )
    }

    /// Why it differs, as a person is told.
    pub fn why(&self) -> &'static str {
        match self.status {
            Status::Changed => "its definition changed since it was pinned",
            Status::New | Status::Unpinned => "it is new and not pinned yet",
            Status::Removed => "it is no longer listed",
            Status::Unverified => "its pins cannot be read",
        }
    }

    /// The diff as evidence keeps it: bounded.
    pub fn recorded_diff(&self) -> String {
        let diff = self.diff();
        match diff.char_indices().nth(RECORDED_DIFF) {
            None => diff,
            Some((cut, _)) => format!(
                "{}… [{} bytes in all]",
                diff.get(..cut).unwrap_or_default(),
                diff.len()
            ),
        }
    }
}

/// A tool taken out of its upstream's catalog until its definition is accepted.
#[derive(Debug, Clone)]
pub(crate) struct Quarantined {
    /// What a call of it is told: why, and how a person accepts it.
    pub message: String,
    pub change: Change,
    /// Its definition as the upstream lists it now (cleaned, under its exposed name): what a
    /// person asked to accept it with a call is shown, and what that call is checked against.
    pub tool: Option<Tool>,
}

/// An upstream's listing compared with its pins: every definition it lists, and what differs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Review {
    pub definitions: Definitions,
    pub changes: Vec<Change>,
    /// How many definitions were pinned at first sight by this listing.
    pub first_sight: usize,
}

impl PinBook {
    /// Reads the pins of the config at `config`. An unreadable or corrupt file is an error:
    /// nothing is served against pins nobody can read.
    pub fn open(config: &Path, recording: Recording) -> Result<Self, PinError> {
        let path = pins_path(config);
        let known = modified(&path);
        let pins = file::read(&path)?;
        Ok(Self {
            path,
            current: ArcSwap::from_pointee(pins),
            recording,
            kept: Kept::File {
                writing: Mutex::new(known),
            },
        })
    }

    /// These pins kept in the shared state's database from now on (replicas sharing state),
    /// the file's pins seeding it: when this book records (`serve`), each upstream the file
    /// pins and the database does not is recorded from the file. An unreachable database or
    /// pins there that do not verify are an error, as an unreadable file is.
    pub async fn share(self, store: portcullis_state::Store) -> Result<Self, PinError> {
        let seed = Pins::clone(&self.current.load());
        let seeding = self.recording == Recording::FirstSight;
        let (shared, pins) = shared::Shared::open(store, seed, seeding).await?;
        Ok(Self {
            current: ArcSwap::from_pointee(pins),
            kept: Kept::Shared(shared),
            ..self
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the pins are kept, as a person is told.
    pub fn kept_in(&self) -> String {
        match self.kept {
            Kept::File { .. } => format!("{}", self.path.display()),
            Kept::Shared(_) => format!("the shared database (seeded from {})", self.path.display()),
        }
    }

    /// Reads the file again if another process replaced it since this book last read or
    /// wrote it: `None` when it did not, else whether it could be read (on an error the pins
    /// in force stay).
    /// Under shared state: when another process changed the database's pins, or the last read
    /// of them failed and they can be read again.
    pub(crate) fn reload_if_replaced(&self) -> Option<Result<(), PinError>> {
        let writing = match &self.kept {
            Kept::File { writing } => writing,
            Kept::Shared(shared) => {
                return shared
                    .reload_if_changed()
                    .map(|read| read.map(|pins| self.current.store(Arc::new(pins))));
            }
        };
        let mut known = writing.lock().unwrap_or_else(PoisonError::into_inner);
        let now = modified(&self.path);
        if now == *known {
            return None;
        }
        *known = now;
        Some(file::read(&self.path).map(|pins| self.current.store(Arc::new(pins))))
    }

    /// Compares `catalog` (as fetched, cleaned) with `upstream`'s pins, records them at first
    /// sight under `tofu` when this book records, and takes every quarantined definition out
    /// of the catalog.
    pub(crate) fn review(
        &self,
        upstream: &Upstream,
        namespacing: Namespacing,
        catalog: &mut Catalog,
    ) {
        if upstream.pinning == Pinning::Off {
            return;
        }
        let definitions = definitions(catalog, namespacing, &upstream.name);
        let mut review = match self.pins_of(&upstream.name) {
            Ok(Some(pins)) => compare(&pins, &definitions),
            Ok(None) => self.first_sight(upstream, &definitions),
            Err(error) => {
                // Fail closed: what cannot be compared is not served as if it matched.
                tracing::error!(upstream = %upstream.name, %error, "the upstream's pins cannot be read; its definitions are quarantined");
                unverified(&definitions)
            }
        };
        review.definitions = definitions;
        catalog.withhold(&review, namespacing, &upstream.name);
        catalog.review = review;
    }

    /// `upstream`'s pins in force: under shared state, read from the database now (another
    /// replica may have accepted a definition since this book last read them).
    fn pins_of(&self, upstream: &UpstreamName) -> Result<Option<UpstreamPins>, PinError> {
        match &self.kept {
            Kept::File { .. } => Ok(self
                .current
                .load()
                .upstreams
                .get(upstream.as_str())
                .cloned()),
            Kept::Shared(shared) => {
                let pins = shared.upstream(upstream.as_str())?;
                self.keep_current(upstream, pins.clone());
                Ok(pins)
            }
        }
    }

    /// `pins` as `upstream`'s pins in force in this book (`None`: it has none).
    fn keep_current(&self, upstream: &UpstreamName, pins: Option<UpstreamPins>) {
        self.current.rcu(|current| {
            let mut changed = Pins::clone(current);
            match pins.clone() {
                Some(pins) => changed.upstreams.insert(upstream.to_string(), pins),
                None => changed.upstreams.remove(upstream.as_str()),
            };
            changed
        });
    }

    /// Records `definitions` as the pins of `upstream`, never pinned, at first sight. Under
    /// shared state only if no replica pinned it meanwhile: `Some` then, with the pins that
    /// were first (and stay).
    fn pin_first_sight(
        &self,
        upstream: &UpstreamName,
        definitions: &Definitions,
    ) -> Result<Option<UpstreamPins>, PinError> {
        let Kept::Shared(shared) = &self.kept else {
            return self.accept(upstream, None, definitions).map(|_| None);
        };
        let mut fresh = UpstreamPins::default();
        for ((kind, local), definition) in definitions {
            fresh.insert(*kind, local.clone(), Pin::of(definition));
        }
        let first = shared.pin_first(upstream.as_str(), &fresh)?;
        self.keep_current(upstream, Some(first.clone().unwrap_or(fresh)));
        Ok(first)
    }

    /// An upstream without pins: recorded (`tofu`, recording), else every definition unpinned,
    /// quarantined under `strict` and when recording failed.
    fn first_sight(&self, upstream: &Upstream, definitions: &Definitions) -> Review {
        let recorded = match (upstream.pinning, self.recording) {
            (Pinning::Tofu, Recording::FirstSight) => {
                match self.pin_first_sight(&upstream.name, definitions) {
                    Ok(None) => true,
                    // Another replica pinned it first: compared with those.
                    Ok(Some(first)) => return compare(&first, definitions),
                    Err(error) => {
                        // Fail closed: what could not be pinned is not served as if it were.
                        tracing::error!(upstream = %upstream.name, %error, "could not pin the upstream's definitions; they are quarantined");
                        false
                    }
                }
            }
            _ => false,
        };
        if recorded {
            return Review {
                first_sight: definitions.len(),
                ..Review::default()
            };
        }
        let quarantined =
            upstream.pinning == Pinning::Strict || self.recording == Recording::FirstSight;
        let changes = definitions
            .iter()
            .map(|((kind, name), definition)| Change {
                kind: *kind,
                name: name.clone(),
                status: Status::Unpinned,
                pinned: None,
                listed: Some(Pin::of(definition)),
                quarantined,
            })
            .collect();
        Review {
            changes,
            ..Review::default()
        }
    }

    /// Records `definitions` as `upstream`'s pins: all of them (`name` absent: the upstream's
    /// pins become exactly these), or those of every kind named `name` (a name pinned but no
    /// longer listed loses its pin). Returns what was recorded or removed, by kind and name.
    pub fn accept(
        &self,
        upstream: &UpstreamName,
        name: Option<&str>,
        definitions: &Definitions,
    ) -> Result<Vec<(EntryKind, String)>, PinError> {
        self.rewrite(upstream, |entry| {
            let mut touched = Vec::new();
            match name {
                None => {
                    let mut fresh = UpstreamPins::default();
                    for ((kind, local), definition) in definitions {
                        fresh.insert(*kind, local.clone(), Pin::of(definition));
                        touched.push((*kind, local.clone()));
                    }
                    *entry = fresh;
                }
                Some(name) => {
                    for kind in [
                        EntryKind::Tool,
                        EntryKind::Prompt,
                        EntryKind::ResourceTemplate,
                    ] {
                        let listed = definitions.get(&(kind, name.to_owned()));
                        let changed = match listed {
                            Some(definition) => {
                                entry.insert(kind, name.to_owned(), Pin::of(definition));
                                true
                            }
                            None => entry.remove(kind, name).is_some(),
                        };
                        if changed {
                            touched.push((kind, name.to_owned()));
                        }
                    }
                }
            }
            touched
        })
    }

    /// Records exactly the listed definition of `change` as its pin (a person accepted that
    /// definition, shown to them, with a call of it); nothing else of the upstream changes.
    pub(crate) fn accept_change(
        &self,
        upstream: &UpstreamName,
        change: &Change,
    ) -> Result<(), PinError> {
        let Some(listed) = change.listed.clone() else {
            return Ok(());
        };
        self.rewrite(upstream, |pins| {
            pins.insert(change.kind, change.name.clone(), listed);
        })
    }

    /// Reads `upstream`'s pins afresh under a lock (the file's, or under shared state the
    /// database row's), changes them with `change`, and writes them back.
    fn rewrite<T>(
        &self,
        upstream: &UpstreamName,
        change: impl FnOnce(&mut UpstreamPins) -> T,
    ) -> Result<T, PinError> {
        let writing = match &self.kept {
            Kept::File { writing } => writing,
            Kept::Shared(shared) => {
                let (changed, pins) = shared.change(upstream.as_str(), change)?;
                self.keep_current(upstream, Some(pins));
                return Ok(changed);
            }
        };
        let mut known = writing.lock().unwrap_or_else(PoisonError::into_inner);
        let _directory = file::lock(&self.path)?;
        // Read afresh: another process (`pins accept` beside `serve`) may have written since.
        // A file that cannot be read is never written over.
        let mut pins = file::read(&self.path)?;
        let changed = change(pins.upstreams.entry(upstream.to_string()).or_default());
        file::write(&self.path, &pins)?;
        *known = modified(&self.path);
        self.current.store(Arc::new(pins));
        Ok(changed)
    }
}

/// The file's modification time, to notice another process's writes.
fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path)
        .and_then(|metadata| metadata.modified())
        .ok()
}

/// The evidence of a listing's changes: each one `before` (the listing it replaces) did not
/// have, and each definition quarantined before that now matches its pin.
pub(crate) fn events(
    upstream: &UpstreamName,
    before: &[Change],
    review: &Review,
) -> Vec<DefinitionChanged> {
    let after = &review.changes;
    let digest = |pin: &Option<Pin>| pin.as_ref().map(|pin| pin.digest.clone());
    let same_entry = |a: &Change, b: &Change| a.kind == b.kind && a.name == b.name;
    let mut events: Vec<DefinitionChanged> = after
        .iter()
        .filter(|change| !before.contains(change))
        .map(|change| DefinitionChanged {
            upstream: upstream.to_string(),
            entry: change.kind.as_str().to_owned(),
            name: change.name.clone(),
            change: change.status.as_str().to_owned(),
            pinned: digest(&change.pinned),
            listed: digest(&change.listed),
            quarantined: change.quarantined,
            diff: change.recorded_diff(),
            accepted_by: None,
        })
        .collect();
    for change in before.iter().filter(|change| change.quarantined) {
        if !after.iter().any(|now| same_entry(now, change)) {
            let listed = review
                .definitions
                .get(&(change.kind, change.name.clone()))
                .map(|definition| Pin::of(definition).digest);
            events.push(DefinitionChanged {
                upstream: upstream.to_string(),
                entry: change.kind.as_str().to_owned(),
                name: change.name.clone(),
                change: "matches".to_owned(),
                pinned: listed.clone(),
                listed,
                quarantined: false,
                diff: String::new(),
                accepted_by: None,
            });
        }
    }
    events
}

/// Every definition of an upstream whose pins cannot be read: quarantined, since nothing says
/// it is the one accepted.
fn unverified(definitions: &Definitions) -> Review {
    let changes = definitions
        .iter()
        .map(|((kind, name), definition)| Change {
            kind: *kind,
            name: name.clone(),
            status: Status::Unverified,
            pinned: None,
            listed: Some(Pin::of(definition)),
            quarantined: true,
        })
        .collect();
    Review {
        changes,
        ..Review::default()
    }
}

/// What differs between an upstream's pins and its listed definitions. Quarantined: a changed
/// definition, and one not pinned (the upstream has pins: it was added after the person
/// accepted them).
fn compare(pins: &UpstreamPins, definitions: &Definitions) -> Review {
    let mut changes = Vec::new();
    for ((kind, name), definition) in definitions {
        let listed = Pin::of(definition);
        let pinned = pins.get(*kind, name);
        let status = match pinned {
            Some(pin) if pin.digest == listed.digest => continue,
            Some(_) => Status::Changed,
            None => Status::New,
        };
        changes.push(Change {
            kind: *kind,
            name: name.clone(),
            status,
            pinned: pinned.cloned(),
            listed: Some(listed),
            quarantined: true,
        });
    }
    for (kind, name, pin) in pins.entries() {
        if !definitions.contains_key(&(kind, name.clone())) {
            changes.push(Change {
                kind,
                name: name.clone(),
                status: Status::Removed,
                pinned: Some(pin.clone()),
                listed: None,
                quarantined: false,
            });
        }
    }
    Review {
        changes,
        ..Review::default()
    }
}

/// Every definition of `catalog` under the upstream's own names. A tool's or prompt's `name`
/// is its own (pins do not change with namespacing); `_meta` is left out (it is not what the
/// tool says or accepts, and may change with every listing).
pub fn definitions(
    catalog: &Catalog,
    namespacing: Namespacing,
    upstream: &UpstreamName,
) -> Definitions {
    let own = std::slice::from_ref(upstream);
    let local = |exposed: &str| {
        namespacing
            .resolve(own, exposed)
            .map(|n| n.local.to_owned())
    };
    let local_uri = |exposed: &str| {
        namespacing
            .resolve_uri(own, exposed)
            .map(|n| n.local.to_owned())
    };
    let mut definitions = Definitions::new();
    let mut add = |kind: EntryKind,
                   name: Option<String>,
                   value: Result<Value, serde_json::Error>,
                   key: &str| {
        if let (Some(name), Ok(Value::Object(mut object))) = (name, value) {
            object.remove("_meta");
            object.insert(key.to_owned(), Value::String(name.clone()));
            definitions.insert((kind, name), Value::Object(object));
        }
    };
    for tool in &catalog.tools {
        add(
            EntryKind::Tool,
            local(&tool.name),
            serde_json::to_value(tool),
            "name",
        );
    }
    for prompt in &catalog.prompts {
        add(
            EntryKind::Prompt,
            local(&prompt.name),
            serde_json::to_value(prompt),
            "name",
        );
    }
    for template in &catalog.templates {
        add(
            EntryKind::ResourceTemplate,
            local_uri(&template.uri_template),
            serde_json::to_value(template),
            "uriTemplate",
        );
    }
    definitions
}

impl Catalog {
    /// Takes every quarantined definition of `review` out of the lists and the callable names,
    /// keeping for each tool the message a call of it gets.
    fn withhold(&mut self, review: &Review, namespacing: Namespacing, upstream: &UpstreamName) {
        let mut quarantined = BTreeMap::new();
        for change in review.changes.iter().filter(|change| change.quarantined) {
            let name = change.name.as_str();
            match change.kind {
                EntryKind::Tool => {
                    let Ok(exposed) = namespacing.expose(upstream, name) else {
                        continue;
                    };
                    let tool = self.tools.iter().find(|tool| tool.name == exposed).cloned();
                    self.tools.retain(|tool| tool.name != exposed);
                    self.tool_names.remove(name);
                    self.hints.remove(name);
                    let message = quarantine_message(upstream, change);
                    let change = change.clone();
                    quarantined.insert(
                        exposed,
                        Quarantined {
                            message,
                            change,
                            tool,
                        },
                    );
                }
                EntryKind::Prompt => {
                    let Ok(exposed) = namespacing.expose(upstream, name) else {
                        continue;
                    };
                    self.prompts.retain(|prompt| prompt.name != exposed);
                    self.prompt_names.remove(name);
                }
                EntryKind::ResourceTemplate => {
                    let exposed = namespacing.expose_uri(upstream, name);
                    self.templates
                        .retain(|template| template.uri_template != exposed);
                }
            }
        }
        self.quarantined = quarantined;
    }
}

impl Catalog {
    /// The quarantined resource template (its own URI template) that `local_uri` could be an
    /// instance of, if any: a read of it is refused, as a call of a quarantined tool is.
    pub(crate) fn quarantined_template(&self, local_uri: &str) -> Option<&str> {
        self.review
            .changes
            .iter()
            .filter(|change| change.quarantined && change.kind == EntryKind::ResourceTemplate)
            .map(|change| change.name.as_str())
            .find(|template| could_expand_to(template, local_uri))
    }
}

/// Whether `uri` could be an expansion of the URI template `template` (RFC 6570): its literal
/// parts appear in order, the first at the start and the last at the end, and each expression
/// (`{…}`) stands for anything. Generous on purpose: it decides what is refused.
fn could_expand_to(template: &str, uri: &str) -> bool {
    let mut literals = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        literals.push(rest.get(..open).unwrap_or_default());
        rest = rest
            .get(open..)
            .and_then(|tail| tail.find('}').and_then(|close| tail.get(close + 1..)))
            .unwrap_or_default();
    }
    let last = rest;
    if literals.is_empty() {
        return template == uri;
    }
    let mut remaining = uri;
    for (index, literal) in literals.iter().enumerate() {
        if index == 0 {
            let Some(after) = remaining.strip_prefix(literal) else {
                return false;
            };
            remaining = after;
        } else {
            let Some(at) = remaining.find(literal) else {
                return false;
            };
            remaining = remaining.get(at + literal.len()..).unwrap_or_default();
        }
    }
    remaining.ends_with(last)
}

/// What a call of a quarantined tool is told: why, and what a person does about it.
fn quarantine_message(upstream: &UpstreamName, change: &Change) -> String {
    let why = change.why();
    format!(
        "tool `{upstream}.{}` is quarantined: {why}; a person can review the change with `portcullis pins diff --config <config> {upstream}` and accept it with `portcullis pins accept --config <config> {upstream}.{}`, or approve a call of it in a client that can ask them (the request shows the change)",
        change.name, change.name
    )
}

#[cfg(test)]
mod tests;
