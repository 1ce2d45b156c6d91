//! What an identity may see of a merged list, decided once and kept: a page is cut from the
//! kept decisions, never decided again. Listing 10,000 tools a page at a time used to run the
//! list check for every entry before the page, on every page.
//!
//! A kept decision is valid for exactly what decided it: the list (tools, prompts, resources
//! or templates), the whole identity envelope, the policy version (and the second, when a
//! policy reads `context.now`), and for each upstream
//! serving that identity, in order, its name, the very catalog the entries were decided
//! against (the same `Arc`: a new list from the upstream is a new catalog) and the scopes the
//! user's grant makes visible (`hide_tools`). Anything else differing is a miss, decided anew.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use portcullis_config::{Pinning, Taint};
use portcullis_core::{IdentityEnvelope, UpstreamName};

use crate::tool_search::ToolIndex;
use crate::upstream::{Catalog, UpstreamHandle};

/// Kept decisions at most; past that they are all dropped (a flood of identities costs
/// decisions, not memory).
const MAX_KEPT: usize = 1024;

/// The kept decisions of every identity.
#[derive(Default)]
pub(crate) struct Visibility {
    kept: Mutex<HashMap<Key, Arc<Seen>>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    list: &'static str,
    /// The envelope as JSON: every field a decision may read.
    identity: String,
    policy: u64,
    /// The second, when the policy reads the clock (`context.now`, in seconds): decisions then
    /// hold for that second only.
    second: Option<u64>,
}

/// What one identity may see of one list, upstream by upstream.
pub(crate) struct Seen {
    upstreams: Vec<SeenUpstream>,
    /// The search index of a tools list's entries (`tool_search.rs`), built at its first
    /// search: kept with the decisions it was built from, it is never older or wider.
    index: OnceLock<ToolIndex>,
}

/// One upstream's part: the catalog decided against, and the indices kept, in order.
struct SeenUpstream {
    name: UpstreamName,
    catalog: Arc<Catalog>,
    scopes: Option<BTreeSet<String>>,
    kept: Vec<usize>,
    /// Its definitions are untrusted content: nobody accepted them (`pinning = "off"`) and
    /// what it sends taints a session (`taint = "session"`).
    untrusted_definitions: bool,
}

/// One upstream as it serves an identity now: what a kept decision must match.
pub(crate) struct Serving {
    pub handle: Arc<UpstreamHandle>,
    pub catalog: Arc<Catalog>,
    /// The scopes the user's grant makes visible there (`hide_tools`), if it narrows them.
    pub scopes: Option<BTreeSet<String>>,
}

impl Seen {
    fn matches(&self, serving: &[Serving]) -> bool {
        self.upstreams.len() == serving.len()
            && self.upstreams.iter().zip(serving).all(|(seen, now)| {
                seen.name == *now.handle.name()
                    && Arc::ptr_eq(&seen.catalog, &now.catalog)
                    && seen.scopes == now.scopes
            })
    }

    /// How many entries are kept.
    pub(crate) fn len(&self) -> usize {
        self.upstreams.iter().map(|seen| seen.kept.len()).sum()
    }

    /// The search index of these entries, built by `build` at the first call.
    pub(crate) fn index(&self, build: impl FnOnce(&Self) -> ToolIndex) -> &ToolIndex {
        self.index.get_or_init(|| build(self))
    }

    /// The upstreams whose definitions among these are untrusted content (see
    /// `SeenUpstream::untrusted_definitions`): a session shown them is tainted by them.
    pub(crate) fn untrusted_definitions(&self) -> impl Iterator<Item = &UpstreamName> {
        self.upstreams
            .iter()
            .filter(|seen| seen.untrusted_definitions && !seen.kept.is_empty())
            .map(|seen| &seen.name)
    }

    /// The entries kept, in list order: each with its catalog and index.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&Catalog, usize)> {
        self.upstreams.iter().flat_map(|seen| {
            seen.kept
                .iter()
                .map(move |&index| (seen.catalog.as_ref(), index))
        })
    }
}

impl Visibility {
    /// What `envelope` may see of `list` (`items` of each catalog) under policy `policy`,
    /// from the kept decisions when they match `serving`, else decided by `keep` and kept.
    pub(crate) fn seen<T>(
        &self,
        (list, items): (&'static str, impl Fn(&Catalog) -> &[T]),
        envelope: &IdentityEnvelope,
        (policy, second): (u64, Option<u64>),
        serving: Vec<Serving>,
        keep: impl Fn(&UpstreamHandle, &T) -> bool,
    ) -> Arc<Seen> {
        let key = Key {
            list,
            // An envelope that does not serialize is never kept (decided every time).
            identity: serde_json::to_string(envelope).unwrap_or_default(),
            policy,
            second,
        };
        let kept = (!key.identity.is_empty())
            .then(|| self.kept.lock().ok()?.get(&key).cloned())
            .flatten();
        if let Some(seen) = kept.filter(|seen| seen.matches(&serving)) {
            return seen;
        }
        let seen = Arc::new(Seen {
            upstreams: serving
                .into_iter()
                .map(|now| SeenUpstream {
                    kept: items(&now.catalog)
                        .iter()
                        .enumerate()
                        .filter(|(_, entry)| keep(&now.handle, entry))
                        .map(|(index, _)| index)
                        .collect(),
                    name: now.handle.name().clone(),
                    untrusted_definitions: now.handle.spec.pinning == Pinning::Off
                        && now.handle.spec.taint == Taint::Session,
                    catalog: now.catalog,
                    scopes: now.scopes,
                })
                .collect(),
            index: OnceLock::new(),
        });
        if !key.identity.is_empty()
            && let Ok(mut kept) = self.kept.lock()
        {
            if kept.len() >= MAX_KEPT {
                kept.clear();
            }
            kept.insert(key, seen.clone());
        }
        seen
    }
}
