//! Which arguments of a tool are paths, found from its input schema and from config, and the
//! check of a call's arguments against the roots.
//!
//! Discovery is by property name, anywhere in the schema: objects, arrays of strings, arrays of
//! objects, `anyOf`/`oneOf`/`allOf`, local `$ref`s. Where the schema does not say what an object
//! holds (no `properties`, or extra properties not forbidden by `additionalProperties: false`),
//! the undeclared members are looked at by name when a call arrives: an upstream may read
//! properties its schema never listed.

use std::collections::{BTreeSet, HashSet};
use std::ffi::OsStr;

use serde_json::{Map, Value};

use portcullis_core::ArgumentPointer;
use portcullis_core::pointer::Segment;

use crate::error::{ArgumentDenied, ArgumentReason, PointerError};
use crate::resolve::Resolver;
use crate::roots::Roots;
use crate::uri::scheme;

/// The most path values checked in one call. Each costs a few system calls; a call with more
/// is refused rather than let it make Portcullis do unbounded work.
pub const MAX_CHECKED_VALUES: usize = 10_000;

/// How deep discovery goes into a schema, and how deep a call's arguments may be nested where
/// they are searched. Deeper schemas are searched by name at call time instead; deeper
/// arguments are refused, since they cannot be searched.
pub const MAX_DEPTH: usize = 64;

/// How many schema nodes discovery visits for one tool. `$ref`s are expanded where they are
/// used, so a small schema can describe an exponentially large one; past this, what is left is
/// searched by name at call time instead.
const MAX_SCHEMA_VISITS: usize = 10_000;

/// Property names that hold a path, compared after lower-casing and dropping `_` and `-`
/// (`file_path`, `filePath` and `FILEPATH` are the same).
const PATH_NAMES: [&str; 19] = [
    "path",
    "paths",
    "file",
    "files",
    "filename",
    "filenames",
    "directory",
    "directories",
    "dir",
    "dirs",
    "source",
    "sources",
    "destination",
    "destinations",
    "target",
    "targets",
    "root",
    "roots",
    "cwd",
];

/// Endings that make a name a path name too (`filePath`, `outputDir`, `sourceFiles`).
const PATH_SUFFIXES: [&str; 10] = [
    "path",
    "paths",
    "filename",
    "filenames",
    "directory",
    "directories",
    "dir",
    "dirs",
    "files",
    "folder",
];

/// Names that hold a URI: a path only when it is a `file:` URI or has no scheme at all.
const URI_NAMES: [&str; 4] = ["uri", "uris", "url", "urls"];

/// The path arguments of one tool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathArguments {
    places: Vec<Place>,
}

/// Where in the arguments to look, and what to expect there.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Place {
    steps: Vec<Step>,
    look: Look,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Step {
    /// An object member, or an array element when it is a JSON pointer array index.
    Key(String),
    /// Every array element and every object member.
    Any,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Path,
    Uri,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Look {
    /// A path the schema types as text (or does not type): it must be a string or an array of
    /// strings (or null, when the schema allows null).
    Text { kind: Kind, nullable: bool },
    /// A path-named value the schema types as something else (an object, a number): strings
    /// found there are checked anyway, anything else is left to the places below it.
    Loose { kind: Kind },
    /// Members not in `declared`, at any depth below, checked by name.
    Undeclared { declared: BTreeSet<String> },
}

impl PathArguments {
    /// The path arguments of a tool: every `configured` JSON pointer (`/path`, `/edits/0/path`;
    /// a `*` segment matches every array element and object member: `/paths/*`,
    /// `/files/*/source`) and every property of `input_schema` with a path-like name.
    pub fn from_schema(input_schema: &Value, configured: &[String]) -> Result<Self, PointerError> {
        let mut places = Vec::new();
        for pointer in configured {
            let steps = parse_pointer(pointer)?;
            let kind = match steps.last() {
                Some(Step::Key(name)) => name_kind(name).unwrap_or(Kind::Path),
                _ => Kind::Path,
            };
            places.push(Place {
                steps,
                look: Look::Text {
                    kind,
                    nullable: false,
                },
            });
        }
        let mut discovery = Discovery {
            root: input_schema,
            places: &mut places,
            refs: Vec::new(),
            visits: 0,
        };
        discovery.schema(input_schema, &mut Vec::new(), 0);
        let mut seen = HashSet::with_capacity(places.len());
        places.retain(|place| seen.insert(place.clone()));
        Ok(Self { places })
    }

    /// What is looked at, one line each, for `explain` and logs: `/paths` for a path argument,
    /// `/options/**` where undeclared members are searched by name.
    pub fn describe(&self) -> Vec<String> {
        self.places
            .iter()
            .map(|place| {
                let mut text = String::new();
                for step in &place.steps {
                    text.push('/');
                    match step {
                        Step::Key(key) => text.push_str(&escape_token(key)),
                        Step::Any => text.push('*'),
                    }
                }
                if matches!(place.look, Look::Undeclared { .. }) {
                    text.push_str("/**");
                }
                text
            })
            .collect()
    }

    /// Checks every path in a call's arguments: each one found, each array element, each
    /// nested occurrence, resolved by `resolver` and checked against `roots`. The first refusal
    /// is the answer; without one, every path checked, where it resolved (what a person asked
    /// to approve the call is shown). Missing arguments are fine: there is nothing to check.
    pub fn check_arguments(
        &self,
        arguments: &Value,
        resolver: &Resolver,
        roots: &Roots,
    ) -> Result<Vec<CheckedPath>, ArgumentDenied> {
        if arguments.is_null() {
            return Ok(Vec::new());
        }
        if !arguments.is_object() {
            return Err(ArgumentDenied {
                pointer: String::new(),
                reason: ArgumentReason::NotAnObject,
            });
        }
        let mut checker = Checker {
            resolver,
            roots,
            checked: 0,
            found: Vec::new(),
        };
        for place in &self.places {
            checker.place(arguments, &place.steps, &place.look, &mut String::new())?;
        }
        Ok(checker.found)
    }
}

fn name_kind(name: &str) -> Option<Kind> {
    let folded: String = name
        .chars()
        .filter(|c| !matches!(c, '_' | '-'))
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if URI_NAMES.iter().any(|uri| folded.ends_with(uri)) {
        return Some(Kind::Uri);
    }
    let path_like = PATH_NAMES.contains(&folded.as_str())
        || PATH_SUFFIXES.iter().any(|suffix| folded.ends_with(suffix));
    path_like.then_some(Kind::Path)
}

/// A configured pointer as steps, parsed by the one argument-pointer grammar Portcullis has
/// (`portcullis_core::ArgumentPointer`: RFC 6901, with `*` for every member).
fn parse_pointer(pointer: &str) -> Result<Vec<Step>, PointerError> {
    let error = |reason| PointerError {
        pointer: pointer.to_owned(),
        reason,
    };
    if pointer.is_empty() {
        return Err(error("the whole arguments object is not a path"));
    }
    let parsed = ArgumentPointer::parse(pointer)
        .map_err(|_| error("it must start with `/`, and `~` must be followed by `0` or `1`"))?;
    Ok(parsed
        .segments()
        .iter()
        .map(|segment| match segment {
            Segment::Key(key) => Step::Key(key.clone()),
            Segment::Any => Step::Any,
        })
        .collect())
}

fn escape_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// The walk over a schema that records where paths are.
struct Discovery<'s, 'p> {
    root: &'s Value,
    places: &'p mut Vec<Place>,
    /// The `$ref`s being followed, to stop at a cycle.
    refs: Vec<&'s str>,
    visits: usize,
}

impl<'s> Discovery<'s, '_> {
    /// Records the paths inside a value described by `schema`, found at `steps`.
    fn schema(&mut self, schema: &'s Value, steps: &mut Vec<Step>, depth: usize) {
        let Some(object) = schema.as_object() else {
            // `true` (or anything not a schema object) describes nothing: search by name.
            if schema != &Value::Bool(false) {
                self.undeclared(steps, BTreeSet::new());
            }
            return;
        };
        self.visits += 1;
        if depth > MAX_DEPTH || self.visits > MAX_SCHEMA_VISITS {
            self.undeclared(steps, BTreeSet::new());
            return;
        }
        if let Some(reference) = object.get("$ref") {
            match reference
                .as_str()
                .and_then(|r| self.target(r).map(|t| (r, t)))
            {
                Some((reference, target)) if !self.refs.contains(&reference) => {
                    self.refs.push(reference);
                    self.schema(target, steps, depth + 1);
                    self.refs.pop();
                }
                // A cycle (a recursive schema) or a reference we cannot follow: what lies there
                // is searched by name instead.
                _ => self.undeclared(steps, BTreeSet::new()),
            }
        }
        for keyword in ["anyOf", "oneOf", "allOf"] {
            for alternative in object
                .get(keyword)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                self.schema(alternative, steps, depth + 1);
            }
        }
        for keyword in ["then", "else"] {
            if let Some(branch) = object.get(keyword) {
                self.schema(branch, steps, depth + 1);
            }
        }
        let types = Types::of(object);
        if types.object || types.any {
            self.object(object, steps, depth);
        }
        if types.array {
            self.items(object, steps, depth);
        }
    }

    fn object(&mut self, object: &'s Map<String, Value>, steps: &mut Vec<Step>, depth: usize) {
        let properties = object.get("properties").and_then(Value::as_object);
        for (name, property) in properties.into_iter().flatten() {
            steps.push(Step::Key(name.clone()));
            if let Some(kind) = name_kind(name) {
                let look = self.look(property, kind, depth);
                self.places.push(Place {
                    steps: steps.clone(),
                    look,
                });
            }
            self.schema(property, steps, depth + 1);
            steps.pop();
        }
        let closed = object.get("additionalProperties") == Some(&Value::Bool(false))
            || object.get("unevaluatedProperties") == Some(&Value::Bool(false));
        if !closed {
            let declared = properties
                .map(|properties| properties.keys().cloned().collect())
                .unwrap_or_default();
            self.undeclared(steps, declared);
        }
    }

    fn items(&mut self, object: &'s Map<String, Value>, steps: &mut Vec<Step>, depth: usize) {
        let mut element_schemas: Vec<&'s Value> = Vec::new();
        match object.get("items") {
            Some(Value::Array(tuple)) => element_schemas.extend(tuple),
            Some(items) => element_schemas.push(items),
            None => {}
        }
        element_schemas.extend(
            object
                .get("prefixItems")
                .and_then(Value::as_array)
                .into_iter()
                .flatten(),
        );
        steps.push(Step::Any);
        if element_schemas.is_empty() {
            // Elements of any shape: search them by name.
            self.undeclared(steps, BTreeSet::new());
        }
        for element in element_schemas {
            self.schema(element, steps, depth + 1);
        }
        steps.pop();
    }

    fn undeclared(&mut self, steps: &[Step], declared: BTreeSet<String>) {
        self.places.push(Place {
            steps: steps.to_vec(),
            look: Look::Undeclared { declared },
        });
    }

    /// What a path-named property's schema says its value is.
    fn look(&mut self, property: &'s Value, kind: Kind, depth: usize) -> Look {
        let types = self.types(property, depth, &mut Vec::new());
        if types.any {
            Look::Text {
                kind,
                nullable: false,
            }
        } else if types.object || types.array_of_structures || !(types.text || types.array) {
            Look::Loose { kind }
        } else {
            Look::Text {
                kind,
                nullable: types.null,
            }
        }
    }

    /// The types a schema allows, through `$ref`s and alternatives.
    fn types(&mut self, schema: &'s Value, depth: usize, refs: &mut Vec<&'s str>) -> Types {
        let Some(object) = schema.as_object() else {
            return Types::ANY;
        };
        self.visits += 1;
        if depth > MAX_DEPTH || self.visits > MAX_SCHEMA_VISITS {
            return Types::ANY;
        }
        if let Some(reference) = object.get("$ref").and_then(Value::as_str) {
            return match self.target(reference) {
                Some(target) if !refs.contains(&reference) => {
                    refs.push(reference);
                    let types = self.types(target, depth + 1, refs);
                    refs.pop();
                    types
                }
                _ => Types::ANY,
            };
        }
        if object.contains_key("type") {
            let mut types = Types::of(object);
            if types.array {
                types.array_of_structures = self.items_are_structures(object, depth, refs);
            }
            return types;
        }
        // `allOf` joins the union too: more text types only make the check stricter.
        let alternatives: Vec<&'s Value> = ["anyOf", "oneOf", "allOf"]
            .iter()
            .filter_map(|keyword| object.get(*keyword).and_then(Value::as_array))
            .flatten()
            .collect();
        if alternatives.is_empty() {
            let mut types = Types::of(object);
            if types.array {
                types.array_of_structures = self.items_are_structures(object, depth, refs);
            }
            return types;
        }
        let mut union = Types::NONE;
        for alternative in alternatives {
            union = union.or(self.types(alternative, depth + 1, refs));
        }
        union
    }

    fn items_are_structures(
        &mut self,
        object: &'s Map<String, Value>,
        depth: usize,
        refs: &mut Vec<&'s str>,
    ) -> bool {
        let Some(items) = object.get("items") else {
            return false;
        };
        let element_schemas: Vec<&'s Value> = match items {
            Value::Array(tuple) => tuple.iter().collect(),
            items => vec![items],
        };
        element_schemas.into_iter().any(|element| {
            let types = self.types(element, depth + 1, refs);
            types.object || types.array
        })
    }

    /// A local reference (`#`, `#/$defs/x`) inside the schema.
    fn target(&self, reference: &str) -> Option<&'s Value> {
        let pointer = reference.strip_prefix('#')?;
        if pointer.is_empty() {
            return Some(self.root);
        }
        self.root.pointer(pointer)
    }
}

/// The JSON types a schema allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Types {
    /// Untyped: anything at all, a string included.
    any: bool,
    text: bool,
    array: bool,
    array_of_structures: bool,
    object: bool,
    null: bool,
}

impl Types {
    const NONE: Self = Self {
        any: false,
        text: false,
        array: false,
        array_of_structures: false,
        object: false,
        null: false,
    };

    const ANY: Self = Self {
        any: true,
        ..Self::NONE
    };

    fn or(self, other: Self) -> Self {
        Self {
            any: self.any || other.any,
            text: self.text || other.text,
            array: self.array || other.array,
            array_of_structures: self.array_of_structures || other.array_of_structures,
            object: self.object || other.object,
            null: self.null || other.null,
        }
    }

    /// From `type`; else from the keywords present (`properties`, `items`); else none when
    /// combinators (`$ref`, `anyOf`, `enum` …) describe the value, and anything when nothing
    /// does.
    fn of(object: &Map<String, Value>) -> Self {
        let has = |keywords: &[&str]| keywords.iter().any(|keyword| object.contains_key(*keyword));
        let named: Vec<&str> = match object.get("type") {
            Some(Value::String(name)) => vec![name.as_str()],
            Some(Value::Array(names)) => names.iter().filter_map(Value::as_str).collect(),
            Some(_) => return Self::ANY,
            None => {
                let object_like = has(&["properties", "additionalProperties", "required"]);
                let array_like = has(&["items", "prefixItems"]);
                let described = has(&["$ref", "anyOf", "oneOf", "allOf", "enum", "const", "not"]);
                return match (object_like, array_like, described) {
                    (false, false, false) => Self::ANY,
                    (object, array, _) => Self {
                        object,
                        array,
                        ..Self::NONE
                    },
                };
            }
        };
        let mut types = Self::NONE;
        for name in named {
            match name {
                "string" => types.text = true,
                "array" => types.array = true,
                "object" => types.object = true,
                "null" => types.null = true,
                _ => {}
            }
        }
        types
    }
}

/// The check of one call's arguments.
struct Checker<'a> {
    resolver: &'a Resolver,
    roots: &'a Roots,
    checked: usize,
    found: Vec<CheckedPath>,
}

/// A path argument that passed the check: its JSON pointer and where it resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedPath {
    pub pointer: String,
    pub resolved: std::path::PathBuf,
}

impl Checker<'_> {
    /// Follows `steps` from `value` and looks at what is there.
    fn place(
        &mut self,
        value: &Value,
        steps: &[Step],
        look: &Look,
        pointer: &mut String,
    ) -> Result<(), ArgumentDenied> {
        let Some((step, rest)) = steps.split_first() else {
            return self.look(value, look, pointer);
        };
        match (step, value) {
            (Step::Key(key), Value::Object(members)) => {
                if let Some(member) = members.get(key) {
                    self.nested(member, key, rest, look, pointer)?;
                }
            }
            (Step::Key(key), Value::Array(elements)) => {
                if let Some(element) = array_index(key).and_then(|index| elements.get(index)) {
                    self.nested(element, key, rest, look, pointer)?;
                }
            }
            (Step::Any, Value::Object(members)) => {
                for (key, member) in members {
                    self.nested(member, key, rest, look, pointer)?;
                }
            }
            (Step::Any, Value::Array(elements)) => {
                for (index, element) in elements.iter().enumerate() {
                    self.nested(element, &index.to_string(), rest, look, pointer)?;
                }
            }
            // Nothing there of the shape the path needs: nothing to check.
            _ => {}
        }
        Ok(())
    }

    fn nested(
        &mut self,
        value: &Value,
        token: &str,
        steps: &[Step],
        look: &Look,
        pointer: &mut String,
    ) -> Result<(), ArgumentDenied> {
        let length = pointer.len();
        pointer.push('/');
        pointer.push_str(&escape_token(token));
        let outcome = self.place(value, steps, look, pointer);
        pointer.truncate(length);
        outcome
    }

    fn look(
        &mut self,
        value: &Value,
        look: &Look,
        pointer: &mut String,
    ) -> Result<(), ArgumentDenied> {
        match look {
            Look::Text { kind, nullable } => match value {
                Value::String(text) => self.text(text, *kind, pointer),
                Value::Array(elements) => {
                    for (index, element) in elements.iter().enumerate() {
                        let Value::String(text) = element else {
                            return Err(self.not_a_string(&format!("{pointer}/{index}")));
                        };
                        self.text(text, *kind, &format!("{pointer}/{index}"))?;
                    }
                    Ok(())
                }
                Value::Null if *nullable => Ok(()),
                _ => Err(self.not_a_string(pointer)),
            },
            Look::Loose { kind } => self.loose(value, *kind, pointer),
            Look::Undeclared { declared } => match value {
                Value::Object(members) => {
                    for (key, member) in members {
                        if declared.contains(key) {
                            continue;
                        }
                        let length = pointer.len();
                        pointer.push('/');
                        pointer.push_str(&escape_token(key));
                        let outcome = self.search(key, member, pointer, 1);
                        pointer.truncate(length);
                        outcome?;
                    }
                    Ok(())
                }
                Value::Array(elements) => {
                    for (index, element) in elements.iter().enumerate() {
                        let length = pointer.len();
                        pointer.push_str(&format!("/{index}"));
                        let outcome = self.search_within(element, pointer, 1);
                        pointer.truncate(length);
                        outcome?;
                    }
                    Ok(())
                }
                _ => Ok(()),
            },
        }
    }

    /// A path-named value of no declared text type: its strings are checked.
    fn loose(&mut self, value: &Value, kind: Kind, pointer: &str) -> Result<(), ArgumentDenied> {
        match value {
            Value::String(text) => self.text(text, kind, pointer),
            Value::Array(elements) => {
                for (index, element) in elements.iter().enumerate() {
                    if let Value::String(text) = element {
                        self.text(text, kind, &format!("{pointer}/{index}"))?;
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// A member nobody declared: checked if its name is a path name, and searched below.
    fn search(
        &mut self,
        key: &str,
        value: &Value,
        pointer: &mut String,
        depth: usize,
    ) -> Result<(), ArgumentDenied> {
        if let Some(kind) = name_kind(key) {
            self.loose(value, kind, pointer)?;
        }
        self.search_within(value, pointer, depth)
    }

    fn search_within(
        &mut self,
        value: &Value,
        pointer: &mut String,
        depth: usize,
    ) -> Result<(), ArgumentDenied> {
        if depth > MAX_DEPTH {
            return Err(ArgumentDenied {
                pointer: pointer.clone(),
                reason: ArgumentReason::TooDeep,
            });
        }
        let length = pointer.len();
        let mut outcome = Ok(());
        match value {
            Value::Object(members) => {
                for (key, member) in members {
                    pointer.truncate(length);
                    pointer.push('/');
                    pointer.push_str(&escape_token(key));
                    outcome = self.search(key, member, pointer, depth + 1);
                    if outcome.is_err() {
                        break;
                    }
                }
            }
            Value::Array(elements) => {
                for (index, element) in elements.iter().enumerate() {
                    pointer.truncate(length);
                    pointer.push_str(&format!("/{index}"));
                    outcome = self.search_within(element, pointer, depth + 1);
                    if outcome.is_err() {
                        break;
                    }
                }
            }
            _ => {}
        }
        pointer.truncate(length);
        outcome
    }

    /// One path value: resolved and checked. A URI-named value with a scheme other than `file`
    /// is not a path; a path-named one starting `file:` is checked both as a URI and as a path,
    /// since we cannot know which the upstream takes it for.
    fn text(&mut self, text: &str, kind: Kind, pointer: &str) -> Result<(), ArgumentDenied> {
        self.checked += 1;
        if self.checked > MAX_CHECKED_VALUES {
            return Err(ArgumentDenied {
                pointer: pointer.to_owned(),
                reason: ArgumentReason::TooMany,
            });
        }
        let deny = |denied| ArgumentDenied {
            pointer: pointer.to_owned(),
            reason: ArgumentReason::Path(denied),
        };
        let is_file_uri = scheme(text).map(|scheme| scheme.eq_ignore_ascii_case("file"));
        let mut resolved = None;
        if is_file_uri == Some(true) {
            resolved = Some(
                self.resolver
                    .resolve_uri_within(self.roots, text)
                    .map_err(deny)?,
            );
        }
        if !matches!((kind, is_file_uri), (Kind::Uri, Some(_))) {
            resolved = Some(
                self.resolver
                    .resolve_within(self.roots, OsStr::new(text))
                    .map_err(deny)?,
            );
        }
        if let Some(resolved) = resolved {
            self.found.push(CheckedPath {
                pointer: pointer.to_owned(),
                resolved: resolved.into_path_buf(),
            });
        }
        Ok(())
    }

    fn not_a_string(&self, pointer: &str) -> ArgumentDenied {
        ArgumentDenied {
            pointer: pointer.to_owned(),
            reason: ArgumentReason::NotAString,
        }
    }
}

/// A JSON pointer array index: `0`, or digits without a leading zero.
fn array_index(token: &str) -> Option<usize> {
    let valid = !token.is_empty()
        && token.bytes().all(|b| b.is_ascii_digit())
        && (token == "0" || !token.starts_with('0'));
    if valid { token.parse().ok() } else { None }
}
