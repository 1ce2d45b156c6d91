//! The argument check: a call's arguments against the input schema of the tool as listed,
//! before policy is asked and before any person is: nobody should approve a call its upstream
//! would refuse, and arguments a tool does not declare (a hidden `bcc`, say) never reach it.
//! A schema that lists its `properties` and says nothing else about other members is read as
//! closed at the top level (`close_top_level`): JSON Schema would let any other argument
//! through, but the person reviewing the tool saw only the declared ones.
//!
//! The schema comes from an untrusted upstream, so compiling it loads nothing (no `$ref` to a
//! file or URL: a loader that refuses every URL; the metaschemas are built in), and its
//! `pattern`s run on the `regex` crate, in linear time. A schema that does not compile refuses
//! the call (fail closed). Messages name the argument's location and what was expected, never
//! the value (it may be a secret).

use std::collections::HashMap;
use std::error::Error;
use std::sync::{Arc, Mutex};

use boon::{Compiler, ErrorKind, SchemaIndex, Schemas, UrlLoader, ValidationError};
use rmcp::model::{JsonObject, Tool};

/// Compiled schemas kept at most; past it the cache starts over (a catalog rarely has more).
const CACHED: usize = 4096;

/// Compiled input schemas, by the schema's own text: a definition that changes compiles anew.
#[derive(Default)]
pub struct ArgumentCheck {
    compiled: Mutex<HashMap<String, Arc<Compiled>>>,
}

struct Compiled {
    schemas: Schemas,
    index: SchemaIndex,
}

/// Loads nothing: a `$ref` outside the schema itself is an error, not a fetch.
struct NoLoader;

impl UrlLoader for NoLoader {
    fn load(&self, url: &str) -> Result<serde_json::Value, Box<dyn Error>> {
        Err(format!("`{url}` is outside the schema; portcullis loads no other document").into())
    }
}

impl ArgumentCheck {
    /// Checks `arguments` (none: an empty object) against `tool`'s input schema. `Err` is the
    /// reason, for the client and the evidence.
    pub fn check(&self, tool: &Tool, arguments: Option<&JsonObject>) -> Result<(), String> {
        let mut schema = (*tool.input_schema).clone();
        close_top_level(&mut schema);
        let compiled = self.compiled(&serde_json::Value::Object(schema))?;
        let instance = serde_json::Value::Object(arguments.cloned().unwrap_or_default());
        compiled
            .schemas
            .validate(&instance, compiled.index)
            .map_err(|error| describe(&error))
    }

    fn compiled(&self, schema: &serde_json::Value) -> Result<Arc<Compiled>, String> {
        let key = schema.to_string();
        if let Some(found) = self
            .compiled
            .lock()
            .ok()
            .and_then(|cache| cache.get(&key).cloned())
        {
            return Ok(found);
        }
        let mut compiler = Compiler::new();
        compiler.use_loader(Box::new(NoLoader));
        let location = "urn:portcullis:input-schema";
        compiler
            .add_resource(location, schema.clone())
            .map_err(|error| format!("its input schema cannot be used ({error})"))?;
        let mut schemas = Schemas::new();
        let index = compiler
            .compile(location, &mut schemas)
            .map_err(|error| format!("its input schema cannot be used ({error})"))?;
        let compiled = Arc::new(Compiled { schemas, index });
        if let Ok(mut cache) = self.compiled.lock() {
            if cache.len() >= CACHED {
                cache.clear();
            }
            cache.insert(key, compiled.clone());
        }
        Ok(compiled)
    }
}

/// Keywords that let members other than `properties` be valid, or that take part in deciding
/// it: with any of them at the top level the schema is left as written.
const OPENING_KEYWORDS: [&str; 10] = [
    "additionalProperties",
    "patternProperties",
    "unevaluatedProperties",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "if",
    "$ref",
    "dependentSchemas",
];

/// Adds `additionalProperties: false` to a schema that declares its `properties` and says
/// nothing about other members, so that an argument the tool does not declare is refused.
fn close_top_level(schema: &mut JsonObject) {
    if schema.contains_key("properties")
        && !OPENING_KEYWORDS.iter().any(|key| schema.contains_key(*key))
    {
        schema.insert(
            "additionalProperties".to_owned(),
            serde_json::Value::Bool(false),
        );
    }
}

/// The first failure at the deepest level, as "at `/to`: expected string, got number".
fn describe(error: &ValidationError<'_, '_>) -> String {
    let mut leaf = error;
    while let Some(cause) = leaf.causes.first() {
        leaf = cause;
    }
    let location = leaf.instance_location.to_string();
    let location = if location.is_empty() {
        "the arguments".to_owned()
    } else {
        format!("`{location}`")
    };
    format!(
        "its arguments do not match the tool's input schema: at {location}: {}",
        expected(&leaf.kind)
    )
}

/// What the schema wanted, without the value that was sent.
fn expected(kind: &ErrorKind<'_, '_>) -> String {
    match kind {
        ErrorKind::Type { got, want } => {
            let want: Vec<String> = want.iter().map(|t| t.to_string()).collect();
            format!("expected {}, got {got}", want.join(" or "))
        }
        ErrorKind::Required { want } => format!("missing `{}`", want.join("`, `")),
        ErrorKind::AdditionalProperties { got } => format!(
            "`{}` {} not declared by the tool",
            got.join("`, `"),
            if got.len() == 1 { "is" } else { "are" }
        ),
        ErrorKind::Enum { .. } | ErrorKind::Const { .. } => {
            "not one of the values the tool allows".to_owned()
        }
        ErrorKind::Pattern { want, .. } => format!("does not match the pattern `{want}`"),
        ErrorKind::Format { want, .. } => format!("not a valid {want}"),
        ErrorKind::MinLength { want, .. } => format!("shorter than {want} characters"),
        ErrorKind::MaxLength { want, .. } => format!("longer than {want} characters"),
        ErrorKind::MinItems { want, .. } => format!("fewer than {want} items"),
        ErrorKind::MaxItems { want, .. } => format!("more than {want} items"),
        ErrorKind::FalseSchema => "nothing is allowed here".to_owned(),
        _ => "does not satisfy the schema".to_owned(),
    }
}

#[cfg(test)]
mod tests;
