//! What an upstream's lists say, cleaned before a client (and through it, the model and the
//! person) reads it: terminal control sequences, other control characters, bidirectional
//! overrides and isolates, zero-width and other invisible characters (Unicode tags and
//! variation selectors, which can carry hidden text) are removed; a run of spaces wider than 32
//! columns goes (one space between words), and so does a run of more than two blank lines (one
//! stays), while narrower spacing is kept as written; a text longer than the configured limit
//! is cut, saying so.
//!
//! Applied to every title, description, schema description and title (at any depth), prompt
//! argument description and resource name of a catalog, and (hidden characters only, spacing
//! kept) to the texts of a prompt an upstream answers; names and URIs are not changed (a
//! tool name is validated as a name; what is called must be what was listed). What was removed
//! is counted per entry (`catalog.rs` keeps it), logged, recorded in the upstream's start record
//! and shown by `portcullis tools`.

use rmcp::model::{JsonObject, Prompt, Resource, ResourceTemplate, Tool};
use serde_json::Value;

/// What cleaning removed from one entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    /// Control, bidirectional and invisible characters (an escape sequence counts whole).
    pub hidden: usize,
    /// Whitespace of runs too wide (or blank lines too many) to be anything but padding.
    pub padding: usize,
    /// Texts cut at the limit.
    pub cut: usize,
}

impl Removed {
    pub(crate) fn add(&mut self, other: Removed) {
        self.hidden += other.hidden;
        self.padding += other.padding;
        self.cut += other.cut;
    }

    pub(crate) fn is_empty(&self) -> bool {
        *self == Removed::default()
    }
}

impl std::fmt::Display for Removed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} hidden or control characters, {} characters of padding removed",
            self.hidden, self.padding
        )?;
        if self.cut > 0 {
            write!(f, ", {} texts cut", self.cut)?;
        }
        Ok(())
    }
}

/// Whether `c` is removed wherever it occurs: controls (but newline and tab), bidirectional
/// marks, overrides and isolates, zero-width and other invisible characters, Unicode tags and
/// variation selectors.
pub(crate) fn is_hidden(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{8}' | '\u{b}'..='\u{1f}' | '\u{7f}'..='\u{9f}'
        | '\u{ad}' | '\u{34f}' | '\u{61c}' | '\u{115f}' | '\u{1160}' | '\u{17b4}' | '\u{17b5}'
        | '\u{180b}'..='\u{180f}'
        | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{206f}'
        | '\u{3164}' | '\u{fe00}'..='\u{fe0f}' | '\u{feff}' | '\u{ffa0}' | '\u{fff9}'..='\u{fffb}'
        | '\u{1bca0}'..='\u{1bca3}' | '\u{1d173}'..='\u{1d17a}'
        | '\u{e0000}'..='\u{e0fff}')
}

/// The widest run of horizontal space kept as it is, in columns (a tab counts 8): a
/// docstring's indentation and spacing stay; padding that pushes text out of view does not.
const WIDEST_SPACE: usize = 32;
/// The most blank lines kept in a row; a longer run becomes one.
const MOST_BLANK_LINES: usize = 2;

/// Whether `c` is horizontal space.
fn is_space(c: char) -> bool {
    c == ' ' || c == '\t' || (c.is_whitespace() && !matches!(c, '\n' | '\u{2028}' | '\u{2029}'))
}

/// `text` cleaned, capped at `limit` characters, and what was removed.
pub fn clean(text: &str, limit: usize) -> (String, Removed) {
    let mut removed = Removed::default();
    let (visible, hidden) = strip_hidden(text);
    removed.hidden = hidden;
    // Spacing that hides nothing is left as the upstream wrote it (a rewrite of an honest
    // description is noise); only runs wide or long enough to push text out of view go.
    let mut lines: Vec<String> = Vec::new();
    let mut blanks: Vec<String> = Vec::new();
    for line in visible.split('\n') {
        let line = narrow_spaces(line);
        if line.chars().all(is_space) {
            blanks.push(line);
            continue;
        }
        keep_blanks(&mut lines, &mut blanks);
        lines.push(line);
    }
    keep_blanks(&mut lines, &mut blanks);
    let mut out = lines.join("\n");
    removed.padding = visible.chars().count() - out.chars().count();
    let length = out.chars().count();
    if length > limit {
        out = cut(&out, length, limit);
        removed.cut += 1;
    }
    (out, removed)
}

/// `line` with each run of horizontal space wider than [`WIDEST_SPACE`] taken out: at the
/// line's start or end entirely, between words as one space.
fn narrow_spaces(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        if !is_space(c) {
            out.push(c);
            continue;
        }
        let mut end = start + c.len_utf8();
        let mut width = if c == '\t' { 8 } else { 1 };
        while let Some(&(at, next)) = chars.peek() {
            if !is_space(next) {
                break;
            }
            width += if next == '\t' { 8 } else { 1 };
            end = at + next.len_utf8();
            chars.next();
        }
        if width <= WIDEST_SPACE {
            out.push_str(line.get(start..end).unwrap_or_default());
        } else if start > 0 && end < line.len() {
            out.push(' ');
        }
    }
    out
}

/// Moves the blank lines seen in a row into `lines`: as they are, or one empty line for a
/// run longer than [`MOST_BLANK_LINES`].
fn keep_blanks(lines: &mut Vec<String>, blanks: &mut Vec<String>) {
    if blanks.len() > MOST_BLANK_LINES {
        lines.push(String::new());
        blanks.clear();
    } else {
        lines.append(blanks);
    }
}

/// `text` (`length` characters, more than `limit`) cut to at most `limit` characters, the note
/// saying so included: a note past the limit would make a client show more than `text_limit`
/// allows, and a cut text cleaned again would be cut again. (Config's smallest limit, 64,
/// leaves room for the note; below the note's own length only the note is left.)
fn cut(text: &str, length: usize, limit: usize) -> String {
    let mut kept = limit;
    loop {
        let note = format!("… [cut by portcullis: {} characters more]", length - kept);
        let total = kept + note.chars().count();
        if total <= limit || kept == 0 {
            let kept: String = text.chars().take(kept).collect();
            return format!("{kept}{note}");
        }
        // The note counts what is cut, so keeping less can lengthen it: step until it fits.
        kept -= (total - limit).min(kept);
    }
}

/// `text` without escape sequences, control characters (but newline and tab), bidirectional
/// and invisible characters, line and paragraph separators made newlines; and how many
/// characters were removed. Spacing is left as it is (a prompt's text may be code).
pub fn strip_hidden(text: &str) -> (String, usize) {
    let mut removed = 0;
    let mut visible = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' | '\u{9b}' => removed += 1 + skip_escape(c, &mut chars),
            '\r' => removed += 1,
            '\u{2028}' | '\u{2029}' => visible.push('\n'),
            c if is_hidden(c) => removed += 1,
            c => visible.push(c),
        }
    }
    (visible, removed)
}

/// Removes hidden characters (see [`strip_hidden`]) from every `text` and `description`
/// string of a JSON value at any depth (a prompt's messages); how many.
pub(crate) fn strip_texts(value: &mut serde_json::Value) -> usize {
    let mut removed = 0;
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            Value::Object(members) => {
                for (key, member) in members.iter_mut() {
                    match member {
                        Value::String(text) if key == "text" || key == "description" => {
                            let (visible, found) = strip_hidden(text);
                            if found > 0 {
                                *text = visible;
                                removed += found;
                            }
                        }
                        other => stack.push(other),
                    }
                }
            }
            Value::Array(items) => stack.extend(items.iter_mut()),
            _ => {}
        }
    }
    removed
}

/// Skips the rest of an escape sequence that began with `first` (ESC or CSI); how many
/// characters it skipped.
fn skip_escape(first: char, chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> usize {
    let mut skipped = 0;
    let kind = if first == '\u{9b}' {
        '['
    } else {
        match chars.next() {
            Some(kind) => {
                skipped += 1;
                kind
            }
            None => return 0,
        }
    };
    match kind {
        // CSI: parameters and intermediates, then one final byte.
        '[' => {
            for c in chars.by_ref() {
                skipped += 1;
                if ('\u{40}'..='\u{7e}').contains(&c) {
                    break;
                }
            }
        }
        // OSC, DCS, SOS, PM, APC: up to BEL or ST (ESC \).
        ']' | 'P' | 'X' | '^' | '_' => {
            while let Some(c) = chars.next() {
                skipped += 1;
                if c == '\u{7}' {
                    break;
                }
                if c == '\u{1b}' && chars.peek() == Some(&'\\') {
                    chars.next();
                    skipped += 1;
                    break;
                }
            }
        }
        // A two-character escape: done.
        _ => {}
    }
    skipped
}

/// Cleans `text` in place, adding what was removed to `removed`.
fn clean_in_place(text: &mut String, limit: usize, removed: &mut Removed) {
    let (cleaned, found) = clean(text, limit);
    if !found.is_empty() {
        *text = cleaned;
        removed.add(found);
    }
}

fn clean_option(text: &mut Option<String>, limit: usize, removed: &mut Removed) {
    if let Some(text) = text {
        clean_in_place(text, limit, removed);
    }
}

/// Cleans every `description` and `title` string of a JSON schema, at any depth; property
/// names and every other keyword are left as they are.
fn clean_schema(schema: &mut JsonObject, limit: usize, removed: &mut Removed) {
    let mut stack: Vec<&mut Value> = Vec::new();
    clean_members(schema, limit, removed, &mut stack);
    while let Some(value) = stack.pop() {
        match value {
            Value::Object(members) => clean_members(members, limit, removed, &mut stack),
            Value::Array(items) => stack.extend(items.iter_mut()),
            _ => {}
        }
    }
}

/// Cleans the `description` and `title` strings among `members`; the other members are left
/// on `stack` to be looked into.
fn clean_members<'a>(
    members: &'a mut JsonObject,
    limit: usize,
    removed: &mut Removed,
    stack: &mut Vec<&'a mut Value>,
) {
    for (key, member) in members.iter_mut() {
        match member {
            Value::String(text) if key == "description" || key == "title" => {
                clean_in_place(text, limit, removed);
            }
            other => stack.push(other),
        }
    }
}

pub(crate) fn clean_tool(tool: &mut Tool, limit: usize) -> Removed {
    let mut removed = Removed::default();
    clean_option(&mut tool.title, limit, &mut removed);
    if let Some(description) = &mut tool.description {
        let mut text = description.to_string();
        let before = removed;
        clean_in_place(&mut text, limit, &mut removed);
        if removed != before {
            *description = text.into();
        }
    }
    clean_schema(
        std::sync::Arc::make_mut(&mut tool.input_schema),
        limit,
        &mut removed,
    );
    if let Some(schema) = &mut tool.output_schema {
        clean_schema(std::sync::Arc::make_mut(schema), limit, &mut removed);
    }
    if let Some(annotations) = &mut tool.annotations {
        clean_option(&mut annotations.title, limit, &mut removed);
    }
    removed
}

pub(crate) fn clean_prompt(prompt: &mut Prompt, limit: usize) -> Removed {
    let mut removed = Removed::default();
    clean_option(&mut prompt.title, limit, &mut removed);
    clean_option(&mut prompt.description, limit, &mut removed);
    for argument in prompt.arguments.iter_mut().flatten() {
        clean_option(&mut argument.title, limit, &mut removed);
        clean_option(&mut argument.description, limit, &mut removed);
    }
    removed
}

pub(crate) fn clean_resource(resource: &mut Resource, limit: usize) -> Removed {
    let mut removed = Removed::default();
    clean_in_place(&mut resource.name, limit, &mut removed);
    clean_option(&mut resource.title, limit, &mut removed);
    clean_option(&mut resource.description, limit, &mut removed);
    removed
}

pub(crate) fn clean_template(template: &mut ResourceTemplate, limit: usize) -> Removed {
    let mut removed = Removed::default();
    clean_in_place(&mut template.name, limit, &mut removed);
    clean_option(&mut template.title, limit, &mut removed);
    clean_option(&mut template.description, limit, &mut removed);
    removed
}

/// Phrases by which a description tells the model what to do rather than saying what the tool
/// does (lowercase).
const INSTRUCTIONS: &[&str] = &[
    "ignore previous",
    "ignore all previous",
    "ignore the previous",
    "disregard previous",
    "do not tell the user",
    "don't tell the user",
    "do not mention",
    "without telling",
    "before using any",
    "before calling any",
    "instead of calling",
    "instead of using",
    "always call",
    "always use this",
    "you must call",
    "you must use",
    "<important>",
    "<instructions>",
    "<system>",
];

/// Whether `text` holds `prefix` as the start of a tool name: not inside a word, and followed
/// by a name's character (`mail.send`, not a sentence ending in "mail.").
fn names_a_tool(text: &str, prefix: &str) -> bool {
    text.match_indices(prefix).any(|(at, _)| {
        let before = text.get(..at).and_then(|head| head.chars().next_back());
        let after = text
            .get(at + prefix.len()..)
            .and_then(|tail| tail.chars().next());
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '-')
            && after.is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

/// Why a tool's `description` may be shadowing others (naming another upstream's tools, or
/// telling the model what to do), if it does. `others` are the other upstreams' exposed-name
/// prefixes (`mail.`). A flag is shown and recorded; it never grants or refuses anything.
pub(crate) fn shadowing(description: &str, others: &[String]) -> Option<String> {
    let folded = description.to_lowercase();
    let named: Vec<&str> = others
        .iter()
        .filter(|prefix| names_a_tool(&folded, &prefix.to_lowercase()))
        .map(String::as_str)
        .collect();
    let told: Vec<&str> = INSTRUCTIONS
        .iter()
        .copied()
        .filter(|phrase| folded.contains(phrase))
        .collect();
    let mut why = Vec::new();
    if !named.is_empty() {
        why.push(format!(
            "it names another upstream's tools ({})",
            named
                .iter()
                .map(|prefix| format!("`{prefix}…`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !told.is_empty() {
        why.push(format!(
            "it tells the model what to do ({})",
            told.iter()
                .map(|phrase| format!("\"{phrase}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    (!why.is_empty()).then(|| format!("possible cross-server shadowing: {}", why.join("; ")))
}

#[cfg(test)]
mod tests;
