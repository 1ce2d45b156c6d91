//! Ranking tools against a query: BM25 over each tool's name, title, description and
//! parameter names, the fields weighted (a word of the name counts three times one of the
//! description). Small on purpose: words split at punctuation and camel case, lower-cased,
//! common English words dropped, plurals and verb endings cut, a few everyday verbs folded to
//! the one catalogs use (`remove` → `delete`). No engine, no dictionary files.
//!
//! Pure: it ranks what it is given. What a given identity may see is decided before an index
//! is built (`listing.rs`); nothing here widens it.

use std::collections::HashMap;
use std::sync::LazyLock;

use rmcp::model::Tool;

/// BM25's term-frequency saturation and length normalisation, at their usual values.
const K1: f64 = 1.2;
const B: f64 = 0.75;

/// How much one occurrence in each field counts.
const NAME_WEIGHT: f64 = 3.0;
const TITLE_WEIGHT: f64 = 2.0;
const PARAMETER_WEIGHT: f64 = 1.5;
const DESCRIPTION_WEIGHT: f64 = 1.0;

/// The longest one-line summary a result carries, in characters.
const SUMMARY_CHARS: usize = 160;

/// Words too common to tell tools apart.
const STOP_WORDS: &[&str] = &[
    "a", "all", "an", "and", "any", "are", "as", "at", "be", "by", "can", "do", "for", "from",
    "give", "how", "i", "if", "in", "into", "is", "it", "its", "me", "my", "of", "on", "or", "our",
    "please", "should", "so", "some", "that", "the", "their", "them", "then", "there", "these",
    "this", "to", "tool", "up", "us", "using", "want", "we", "what", "when", "which", "will",
    "with", "would", "you", "your",
];

/// Everyday verbs folded to the word catalogs name their tools with (after stemming).
const FOLDS: &[(&str, &str)] = &[
    ("remove", "delete"),
    ("erase", "delete"),
    ("fetch", "get"),
    ("retrieve", "get"),
    ("obtain", "get"),
    ("find", "search"),
    ("lookup", "search"),
    ("locate", "search"),
    ("modify", "update"),
    ("edit", "update"),
    ("make", "create"),
    ("new", "create"),
    ("enumerate", "list"),
];

/// [`FOLDS`], stemmed as the words they meet are.
static STEMMED_FOLDS: LazyLock<Vec<(String, String)>> = LazyLock::new(|| {
    FOLDS
        .iter()
        .map(|(from, to)| (stem(from), stem(to)))
        .collect()
});

/// One tool as a search result: what the client is shown of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub name: String,
    pub summary: String,
    pub parameters: Vec<String>,
}

/// The tools of one identity's list, ready to be searched.
pub(crate) struct ToolIndex {
    entries: Vec<Entry>,
    /// Each tool's weighted term frequencies and weighted length.
    documents: Vec<(HashMap<String, f64>, f64)>,
    /// How many tools each term occurs in.
    document_frequency: HashMap<String, usize>,
    average_length: f64,
}

impl ToolIndex {
    pub(crate) fn new<'a>(tools: impl IntoIterator<Item = &'a Tool>) -> Self {
        let mut entries = Vec::new();
        let mut documents = Vec::new();
        let mut document_frequency: HashMap<String, usize> = HashMap::new();
        for tool in tools {
            let parameters = parameter_names(tool);
            let mut frequencies: HashMap<String, f64> = HashMap::new();
            let mut length = 0.0;
            let description = tool.description.as_deref().unwrap_or_default();
            let fields = [
                (tool.name.as_ref(), NAME_WEIGHT),
                (tool.title.as_deref().unwrap_or_default(), TITLE_WEIGHT),
                (description, DESCRIPTION_WEIGHT),
            ];
            let parameter_fields = parameters.iter().map(|p| (p.as_str(), PARAMETER_WEIGHT));
            for (text, weight) in fields.into_iter().chain(parameter_fields) {
                for term in terms(text) {
                    *frequencies.entry(term).or_default() += weight;
                    length += weight;
                }
            }
            for term in frequencies.keys() {
                *document_frequency.entry(term.clone()).or_default() += 1;
            }
            documents.push((frequencies, length));
            entries.push(Entry {
                name: tool.name.to_string(),
                summary: summary(description),
                parameters,
            });
        }
        let average_length = if documents.is_empty() {
            1.0
        } else {
            documents.iter().map(|(_, length)| length).sum::<f64>() / documents.len() as f64
        };
        Self {
            entries,
            documents,
            document_frequency,
            average_length: average_length.max(1.0),
        }
    }

    /// At most `limit` tools matching some word of `query`, best first (ties by name).
    pub(crate) fn search(&self, query: &str, limit: usize) -> Vec<&Entry> {
        let mut query_terms: Vec<String> = terms(query).collect();
        query_terms.sort();
        query_terms.dedup();
        let n = self.documents.len() as f64;
        let idf: Vec<(&str, f64)> = query_terms
            .iter()
            .filter_map(|term| {
                let df = *self.document_frequency.get(term)? as f64;
                Some((term.as_str(), (1.0 + (n - df + 0.5) / (df + 0.5)).ln()))
            })
            .collect();
        let mut scored: Vec<(f64, &Entry)> = self
            .documents
            .iter()
            .zip(&self.entries)
            .filter_map(|((frequencies, length), entry)| {
                let norm = K1 * (1.0 - B + B * length / self.average_length);
                let score: f64 = idf
                    .iter()
                    .filter_map(|(term, idf)| {
                        let tf = frequencies.get(*term)?;
                        Some(idf * tf * (K1 + 1.0) / (tf + norm))
                    })
                    .sum();
                (score > 0.0).then_some((score, entry))
            })
            .collect();
        scored.sort_by(|(a, left), (b, right)| b.total_cmp(a).then(left.name.cmp(&right.name)));
        scored
            .into_iter()
            .take(limit)
            .map(|(_, entry)| entry)
            .collect()
    }
}

/// The names of a tool's top-level parameters, in schema order.
pub(crate) fn parameter_names(tool: &Tool) -> Vec<String> {
    tool.input_schema
        .get("properties")
        .and_then(serde_json::Value::as_object)
        .map(|properties| properties.keys().cloned().collect())
        .unwrap_or_default()
}

/// The first line of a description, up to its first sentence's end, at most
/// [`SUMMARY_CHARS`] characters (cut ones end in `…`).
pub(crate) fn summary(description: &str) -> String {
    let line = description.lines().next().unwrap_or_default().trim();
    let sentence = line
        .char_indices()
        .find(|&(at, c)| {
            c == '.'
                && line
                    .get(at + 1..)
                    .and_then(|rest| rest.chars().next())
                    .is_none_or(char::is_whitespace)
        })
        .and_then(|(at, _)| line.get(..=at))
        .unwrap_or(line);
    if sentence.chars().count() <= SUMMARY_CHARS {
        return sentence.to_owned();
    }
    let cut: String = sentence.chars().take(SUMMARY_CHARS - 1).collect();
    format!("{}…", cut.trim_end())
}

/// The search terms of a text: words split at anything but letters and digits and at
/// lower-to-upper case changes, lower-cased, stop words dropped, stemmed and folded.
pub(crate) fn terms(text: &str) -> impl Iterator<Item = String> + '_ {
    words(text)
        .map(|word| word.to_lowercase())
        .filter(|word| !STOP_WORDS.contains(&word.as_str()))
        .map(|word| fold(stem(&word)))
}

fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_alphanumeric())
        .flat_map(split_camel_case)
        .filter(|word| !word.is_empty())
}

/// `listIssues` → `list`, `Issues`; `HTMLPage` stays whole.
fn split_camel_case(word: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut previous_lower = false;
    for (at, c) in word.char_indices() {
        if c.is_uppercase() && previous_lower {
            parts.extend(word.get(start..at));
            start = at;
        }
        previous_lower = c.is_lowercase() || c.is_ascii_digit();
    }
    parts.extend(word.get(start..));
    parts
}

/// Cuts plural and verb endings and a final `e`, so `files`, `listing`, `created` and
/// `updates` meet `file`, `list`, `create` and `update`.
fn stem(word: &str) -> String {
    let stem = cut_ending(word);
    match stem.strip_suffix('e') {
        Some(rest) if rest.chars().count() >= 3 => rest.to_owned(),
        _ => stem,
    }
}

fn cut_ending(word: &str) -> String {
    let long = |suffix: &str, keep: usize| {
        word.strip_suffix(suffix)
            .filter(|stem| stem.chars().count() >= keep)
    };
    if let Some(stem) = long("ies", 2) {
        return format!("{stem}y");
    }
    if let Some(stem) = long("sses", 2) {
        return format!("{stem}ss");
    }
    for (suffix, keep) in [("ing", 3), ("ed", 3), ("es", 3)] {
        if let Some(stem) = long(suffix, keep)
            && !stem.ends_with('s')
            && (suffix != "es" || stem.ends_with(['x', 'h', 'z']))
        {
            return stem.to_owned();
        }
    }
    match long("s", 3) {
        Some(stem) if !stem.ends_with(['s', 'u', 'i']) => stem.to_owned(),
        _ => word.to_owned(),
    }
}

fn fold(word: String) -> String {
    STEMMED_FOLDS
        .iter()
        .find(|(from, _)| *from == word)
        .map_or(word, |(_, to)| to.clone())
}
